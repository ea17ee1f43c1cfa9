//! The JSON report: what made it, frames with their cells, the differential, the total, percentages, flags
//! and errors. `count --json`, `run --json` and `report --journal --json` all print this schema.

use serde_json::{json, Map, Value};

use super::{round4, Report};
use crate::cell::{Cell, Verdict};
use crate::classes::Classes;
use crate::classes::{NOT_WHITE_CELL, UNIDENTIFIED};
use crate::count::reference_range;

fn cell_value(c: &Cell, classes: &Classes, counted: bool) -> Value {
    let p = c.prediction.as_ref();
    json!({
        "bbox": c.rect,
        "class": classes.label(c.class()),
        "confidence": p.map(|p| round4(p.confidence)),
        "predicted": p.map(|p| classes.label(Some(p.predicted))),
        "probs": p.map_or(Vec::new(), |p| p.probs.iter().copied().map(round4).collect()),
        "counted": counted,
        "review": c.review.as_ref().map(|r| json!({
            "verdict": match r.verdict {
                Verdict::Class(k) => classes.label(Some(k)),
                Verdict::Unidentified => UNIDENTIFIED,
                Verdict::NotWhiteCell => NOT_WHITE_CELL,
            },
            "by": r.by,
            "date": super::iso_date(r.unix),
        })),
    })
}

/// The report as a JSON value:
/// `{"frames": [{"path", "cells": [{"bbox", "class", "confidence", "predicted", "probs", "counted",
/// "review": {"verdict", "by", "date"} | null}],
/// "overflow", "error"?, "clipped"?: [r, g, b]}], "differential": {...}, "total": n, "typed": n, "percent": {...}, "flags": [...],
/// "target": n | null, "target_reached": bool, "errors": n, "over_exposed": n, "reference": {...}, "classes": [...],
/// "unidentified_threshold", "analyzer", "model": {"name", "sha256"} | null, "software", "date",
/// "inputs": [...]}`. `probs` follow `classes`; a `target` of `null` means no limit. `clipped` (present
/// only for an over-exposed frame) is the share of its pixels at the camera's white level per channel.
pub fn to_value(r: &Report) -> Value {
    let classes = r.classes();
    let pct = r.differential.percentages();
    let percent: Map<String, Value> = classes
        .iter()
        .zip(&pct)
        .map(|(name, &p)| (name.to_string(), json!(round4(p))))
        .collect();
    let reference: Map<String, Value> = classes
        .iter()
        .filter_map(|name| {
            reference_range(name).map(|rr| (name.to_string(), json!([rr.low, rr.high])))
        })
        .collect();
    let frames: Vec<Value> = r
        .frames
        .iter()
        .map(|f| {
            let cells: Vec<Value> = f
                .cells
                .iter()
                .enumerate()
                .map(|(i, c)| cell_value(c, classes, f.counts(i)))
                .collect();
            let mut v = json!({"path": f.source, "cells": cells, "overflow": f.overflow});
            if let Some(e) = &f.error {
                v["error"] = json!(e);
            }
            if let Some(c) = &f.clipping {
                v["clipped"] = json!(c.share.map(|s| (f64::from(s) * 100.0).round() / 100.0));
            }
            v
        })
        .collect();
    json!({
        "frames": frames,
        "differential": r.differential.to_json(),
        "total": r.differential.total(),
        "typed": r.differential.identified(),
        "percent": percent,
        "flags": r.flags().iter().map(|f| json!({
            "class": f.class,
            "percent": round4(f.percent),
            "direction": f.direction,
            "reference": [f.range.low, f.range.high],
        })).collect::<Vec<_>>(),
        "target": r.stop.limited().then_some(r.stop.target),
        "target_reached": r.done(),
        "errors": r.errors(),
        "over_exposed": r.over_exposed(),
        "reference": {
            "source": "MedlinePlus, Blood differential test, https://medlineplus.gov/ency/article/003657.htm",
            "percent_of_identified_cells": reference,
        },
        "classes": classes,
        "unidentified_threshold": r.analysis.unidentified_threshold,
        "analyzer": r.analysis.analyzer,
        "model": r.analysis.model,
        "software": r.provenance.software,
        "date": r.provenance.date,
        "inputs": r.provenance.inputs,
    })
}

/// The report as pretty JSON text.
pub fn to_string(r: &Report) -> String {
    serde_json::to_string_pretty(&to_value(r)).unwrap_or_else(|_| "{}".into())
}
