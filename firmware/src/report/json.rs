//! The JSON report: frames with their cells, the differential, the total, percentages, flags and errors.

use serde_json::{json, Value};

use super::Report;
use crate::count::ADULT_REFERENCE;
use crate::preprocess::CLASSES;

/// The report as a JSON value:
/// `{"frames": [{"path", "cells": [{"bbox", "class", "confidence", ...}], ...}], "differential": {...},
/// "total": n, "percent": {...}, "flags": [...], "target": n, "target_reached": bool, "errors": n,
/// "reference": {...}}`.
pub fn to_value(r: &Report) -> Value {
    let pct = r.differential.percentages();
    let percent: serde_json::Map<String, Value> = CLASSES
        .iter()
        .map(|c| (c.name().to_string(), json!(super::round4(pct[c.index()]))))
        .collect();
    let reference: serde_json::Map<String, Value> = ADULT_REFERENCE
        .iter()
        .map(|rr| (rr.class.name().to_string(), json!([rr.low, rr.high])))
        .collect();
    json!({
        "frames": r.frames,
        "differential": r.differential.to_json(),
        "total": r.differential.total(),
        "percent": percent,
        "flags": r.flags().iter().map(|f| json!({
            "class": f.class.name(),
            "percent": super::round4(f.percent),
            "direction": f.direction,
            "reference": [f.range.low, f.range.high],
        })).collect::<Vec<_>>(),
        "target": r.stop.target,
        "target_reached": r.done(),
        "errors": r.errors(),
        "reference": {
            "source": "MedlinePlus, Blood differential test, https://medlineplus.gov/ency/article/003657.htm",
            "percent_of_identified_cells": reference,
        },
    })
}

/// The report as pretty JSON text.
pub fn to_string(r: &Report) -> String {
    serde_json::to_string_pretty(&to_value(r)).unwrap_or_else(|_| "{}".into())
}
