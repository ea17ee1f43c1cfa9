//! The report for a laboratory information system: a FHIR R4 `DiagnosticReport` with one contained
//! `Observation` per class of the model, each the class' percentage of the identified white cells.
//!
//! Codes (LOINC, <https://loinc.org>; a count made by digital morphology and checked by a person is a
//! differential with the method unspecified, so the "/100 leukocytes in Blood" terms without a method are
//! used):
//!
//! | class | LOINC | long name |
//! |---|---|---|
//! | panel | [69738-3](https://loinc.org/69738-3) | Differential panel, method unspecified - Blood |
//! | EOSINOPHIL | [26450-7](https://loinc.org/26450-7) | Eosinophils/100 leukocytes in Blood |
//! | LYMPHOCYTE | [26478-8](https://loinc.org/26478-8) | Lymphocytes/100 leukocytes in Blood |
//! | MONOCYTE | [26485-3](https://loinc.org/26485-3) | Monocytes/100 leukocytes in Blood |
//! | NEUTROPHIL | [26511-6](https://loinc.org/26511-6) | Neutrophils/100 leukocytes in Blood |
//! | BASOPHIL | [30180-4](https://loinc.org/30180-4) | Basophils/100 leukocytes in Blood |
//!
//! A class of a site's model without a LOINC term here is sent with its name only (`code.text`), never
//! under a wrong code. Units are UCUM `%` (<http://unitsofmeasure.org>), the reference range is the
//! adult range of [`crate::count::ADULT_REFERENCE`], and a value outside it carries the v3
//! ObservationInterpretation `H` or `L`. The report is `preliminary` until signed, `final` once signed,
//! and `amended` when signed again after an amendment.

use serde_json::{json, Value};

use super::{iso_date, Report};
use crate::count::{reference_range, Direction, UNIDENTIFIED};
use crate::journal::State;

/// LOINC system URI.
pub const LOINC: &str = "http://loinc.org";
/// UCUM system URI.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// The LOINC term of the whole differential.
pub const PANEL: (&str, &str) = ("69738-3", "Differential panel, method unspecified - Blood");

/// The LOINC term of a class, by name (any case): `(code, display)`.
pub fn loinc(class: &str) -> Option<(&'static str, &'static str)> {
    const TERMS: [(&str, &str, &str); 5] = [
        (
            "EOSINOPHIL",
            "26450-7",
            "Eosinophils/100 leukocytes in Blood",
        ),
        (
            "LYMPHOCYTE",
            "26478-8",
            "Lymphocytes/100 leukocytes in Blood",
        ),
        ("MONOCYTE", "26485-3", "Monocytes/100 leukocytes in Blood"),
        (
            "NEUTROPHIL",
            "26511-6",
            "Neutrophils/100 leukocytes in Blood",
        ),
        ("BASOPHIL", "30180-4", "Basophils/100 leukocytes in Blood"),
    ];
    TERMS
        .iter()
        .find(|(name, ..)| name.eq_ignore_ascii_case(class.trim()))
        .map(|&(_, code, display)| (code, display))
}

/// The report's FHIR status from its journal: `preliminary`, `final` or `amended`.
pub fn status(state: &State) -> &'static str {
    match state.signed() {
        None => "preliminary",
        Some(_) if state.amendments.is_empty() => "final",
        Some(_) => "amended",
    }
}

/// The `DiagnosticReport` of a count: `report` as [`Report::from_journal`] built it from `state`,
/// `sample` the specimen's identifier (the sample ID the count was started with).
pub fn to_value(report: &Report, state: &State, sample: &str) -> Value {
    let d = &report.differential;
    let pct = d.percentages();
    let flags = report.flags();
    let status = status(state);
    let effective = iso_date(state.header.unix);
    let mut observations = Vec::new();
    let mut results = Vec::new();
    for (i, name) in report.classes().iter().enumerate() {
        let id = format!("obs-{}", id_part(name));
        let code = match loinc(name) {
            Some((code, display)) => json!({
                "coding": [{"system": LOINC, "code": code, "display": display}],
                "text": name,
            }),
            None => json!({"text": name}),
        };
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id,
            "status": status,
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }]}],
            "code": code,
            "effectiveDateTime": effective,
            "valueQuantity": {
                "value": (pct[i] as f64 * 10.0).round() / 10.0,
                "unit": "%",
                "system": UCUM,
                "code": "%",
            },
            "note": [{"text": format!("{} of {} identified white cells", d.count(Some(i)), d.identified())}],
        });
        if let Some(rr) = reference_range(name) {
            obs["referenceRange"] = json!([{
                "low": {"value": rr.low, "unit": "%", "system": UCUM, "code": "%"},
                "high": {"value": rr.high, "unit": "%", "system": UCUM, "code": "%"},
                "text": "adult reference (MedlinePlus, Blood differential test)",
            }]);
        }
        if let Some(f) = flags.iter().find(|f| f.class == name) {
            let (code, display) = match f.direction {
                Direction::High => ("H", "High"),
                Direction::Low => ("L", "Low"),
            };
            obs["interpretation"] = json!([{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                "code": code,
                "display": display,
            }]}]);
        }
        results.push(json!({"reference": format!("#{id}"), "display": name}));
        observations.push(obs);
    }
    let mut conclusion = format!(
        "{}. {} {}.",
        report.headline(),
        d.unidentified(),
        UNIDENTIFIED.to_lowercase()
    );
    for f in &flags {
        conclusion += &format!(" {f}.");
    }
    let mut r = json!({
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
            "code": "HM",
            "display": "Hematology",
        }]}],
        "code": {
            "coding": [{"system": LOINC, "code": PANEL.0, "display": PANEL.1}],
            "text": "White-cell differential",
        },
        "subject": {"identifier": {"value": sample}, "display": format!("sample {sample}")},
        "specimen": [{"display": format!("blood smear, sample {sample}")}],
        "identifier": [{"system": "urn:leukoscope:sample", "value": sample}],
        "effectiveDateTime": effective,
        "contained": observations,
        "result": results,
        "conclusion": conclusion,
        "extension": [{
            "url": "urn:leukoscope:made-by",
            "valueString": report.made_by(),
        }],
    });
    if let Some(s) = state.signed() {
        r["issued"] = json!(iso_date(s.unix));
        r["resultsInterpreter"] = json!([{"display": s.by}]);
    }
    r
}

/// A class name as a FHIR id part (letters, digits, '-' and '.').
fn id_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect()
}

/// [`to_value`] as pretty JSON.
pub fn to_string(report: &Report, state: &State, sample: &str) -> String {
    serde_json::to_string_pretty(&to_value(report, state, sample)).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_class_has_its_own_loinc_term() {
        let codes: Vec<_> = ["eosinophil", "LYMPHOCYTE", "Monocyte", " NEUTROPHIL "]
            .iter()
            .map(|c| loinc(c).expect("a term").0)
            .collect();
        assert_eq!(codes, ["26450-7", "26478-8", "26485-3", "26511-6"]);
        assert_eq!(loinc("BAND"), None);
        assert_eq!(id_part("A B/c"), "A-B-c");
    }
}
