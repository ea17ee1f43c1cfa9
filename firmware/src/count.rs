//! Counting: the running differential, the stop rule and flags against adult reference ranges.
//!
//! This module knows cell *types* only, never pixels or models: it is fed one typed cell at a time (a
//! [`CountedCell`] from [`crate::pipeline::Pipeline::analyze`], or just an `Option<Class>` where `None` means
//! unidentified) and answers how many of each, whether the target is reached, and which percentages fall
//! outside the reference ranges.
//!
//! Reference ranges ([`ADULT_REFERENCE`]) are the normal adult values of MedlinePlus, *Blood differential
//! test* (U.S. National Library of Medicine, <https://medlineplus.gov/ency/article/003657.htm>): neutrophils
//! 40–60 %, lymphocytes 20–40 %, monocytes 2–8 %, eosinophils 1–4 % (basophils 0.5–1 %, not typed here).
//! Laboratories differ slightly (many texts give neutrophils 40–70 %); a flag is a prompt to look, not a
//! diagnosis. With 100 cells a percentage carries a sampling error of several points, which is why the
//! report always prints the count next to the percentage.

use serde::Serialize;

pub use crate::pipeline::{CountedCell, FrameResult, Pipeline};
use crate::preprocess::{Class, CLASSES};

/// The report's name for cells below the model's confidence threshold.
pub const UNIDENTIFIED: &str = "UNIDENTIFIED";

/// A normal range for one class, in percent of identified white cells.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ReferenceRange {
    /// The class.
    pub class: Class,
    /// Lowest normal percentage.
    pub low: f32,
    /// Highest normal percentage.
    pub high: f32,
}

/// Normal adult differential (MedlinePlus, *Blood differential test*, see the module docs), in [`CLASSES`]
/// order.
pub const ADULT_REFERENCE: [ReferenceRange; 4] = [
    ReferenceRange {
        class: Class::Eosinophil,
        low: 1.0,
        high: 4.0,
    },
    ReferenceRange {
        class: Class::Lymphocyte,
        low: 20.0,
        high: 40.0,
    },
    ReferenceRange {
        class: Class::Monocyte,
        low: 2.0,
        high: 8.0,
    },
    ReferenceRange {
        class: Class::Neutrophil,
        low: 40.0,
        high: 60.0,
    },
];

/// Which side of its range a percentage lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Below the range.
    Low,
    /// Above the range.
    High,
}

/// A class outside its reference range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Flag {
    /// The class.
    pub class: Class,
    /// Its percentage of identified cells.
    pub percent: f32,
    /// Low or high.
    pub direction: Direction,
    /// The range it was checked against.
    pub range: ReferenceRange,
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = match self.direction {
            Direction::Low => "LOW",
            Direction::High => "HIGH",
        };
        write!(
            f,
            "{} {dir}: {:.1} % (adult reference {}–{} %)",
            self.class, self.percent, self.range.low, self.range.high
        )
    }
}

/// A running white-cell differential: counts per class plus unidentified cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Differential {
    counts: [u32; 4],
    unidentified: u32,
}

impl Differential {
    /// An empty count.
    pub fn new() -> Self {
        Differential::default()
    }

    /// Counts one cell from the pipeline.
    pub fn add(&mut self, cell: &CountedCell) {
        self.add_class(cell.class);
    }

    /// Counts one cell of a class (`None`: unidentified).
    pub fn add_class(&mut self, class: Option<Class>) {
        match class {
            Some(c) => self.counts[c.index()] += 1,
            None => self.unidentified += 1,
        }
    }

    /// Cells of a class (`None`: unidentified).
    pub fn count(&self, class: Option<Class>) -> u32 {
        match class {
            Some(c) => self.counts[c.index()],
            None => self.unidentified,
        }
    }

    /// Counts in [`CLASSES`] order.
    pub fn counts(&self) -> [u32; 4] {
        self.counts
    }

    /// Unidentified cells.
    pub fn unidentified(&self) -> u32 {
        self.unidentified
    }

    /// Identified cells.
    pub fn identified(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// All counted cells, unidentified included.
    pub fn total(&self) -> u32 {
        self.identified() + self.unidentified
    }

    /// Percentage of identified cells of each class (all 0 when none is identified).
    pub fn percentages(&self) -> [f32; 4] {
        let n = self.identified();
        self.counts.map(|c| {
            if n == 0 {
                0.0
            } else {
                100.0 * c as f32 / n as f32
            }
        })
    }

    /// Classes outside [`ADULT_REFERENCE`] (percent of identified cells); none before any cell is identified.
    pub fn flags(&self) -> Vec<Flag> {
        if self.identified() == 0 {
            return Vec::new();
        }
        let pct = self.percentages();
        ADULT_REFERENCE
            .iter()
            .zip(pct)
            .filter_map(|(r, p)| {
                let direction = if p < r.low {
                    Direction::Low
                } else if p > r.high {
                    Direction::High
                } else {
                    return None;
                };
                Some(Flag {
                    class: r.class,
                    percent: p,
                    direction,
                    range: *r,
                })
            })
            .collect()
    }

    /// `{"EOSINOPHIL": n, "LYMPHOCYTE": n, "MONOCYTE": n, "NEUTROPHIL": n, "UNIDENTIFIED": n}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for c in CLASSES {
            m.insert(c.name().into(), self.counts[c.index()].into());
        }
        m.insert(UNIDENTIFIED.into(), self.unidentified.into());
        serde_json::Value::Object(m)
    }
}

/// Stop when this many cells (unidentified included) are counted; 0 means never stop early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StopRule {
    /// The target number of cells.
    pub target: u32,
}

impl Default for StopRule {
    /// The usual manual differential: 100 cells.
    fn default() -> Self {
        StopRule { target: 100 }
    }
}

impl StopRule {
    /// Whether counting is done.
    pub fn reached(&self, d: &Differential) -> bool {
        self.target > 0 && d.total() >= self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_total_and_json() {
        let mut d = Differential::new();
        d.add_class(Some(Class::Neutrophil));
        d.add_class(Some(Class::Neutrophil));
        d.add_class(None);
        assert_eq!(d.total(), 3);
        assert_eq!(d.identified(), 2);
        assert_eq!(d.count(None), 1);
        let j = d.to_json();
        assert_eq!(j["NEUTROPHIL"], 2);
        assert_eq!(j["UNIDENTIFIED"], 1);
        assert_eq!(j["MONOCYTE"], 0);
    }

    #[test]
    fn stop_rule() {
        let mut d = Differential::new();
        let r = StopRule { target: 2 };
        assert!(!r.reached(&d));
        d.add_class(None);
        d.add_class(Some(Class::Monocyte));
        assert!(r.reached(&d));
        assert!(!StopRule { target: 0 }.reached(&d));
    }

    #[test]
    fn normal_differential_has_no_flags_abnormal_does() {
        let mut d = Differential::new();
        for (c, n) in [
            (Class::Neutrophil, 55),
            (Class::Lymphocyte, 35),
            (Class::Monocyte, 6),
            (Class::Eosinophil, 3),
        ] {
            (0..n).for_each(|_| d.add_class(Some(c)));
        }
        (0..7).for_each(|_| d.add_class(None));
        assert!(d.flags().is_empty(), "{:?}", d.flags());
        (0..20).for_each(|_| d.add_class(Some(Class::Eosinophil)));
        let f = d.flags();
        assert!(f
            .iter()
            .any(|f| f.class == Class::Eosinophil && f.direction == Direction::High));
        assert!(f[0].to_string().contains("reference"));
        assert!(Differential::new().flags().is_empty());
    }
}
