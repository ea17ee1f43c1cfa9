//! Counting: the running differential, the stop rule and flags against adult reference ranges.
//!
//! This module knows cell *types* only, never pixels or models: it is fed one typed cell at a time (a
//! [`Cell`] from [`crate::pipeline::Pipeline::analyze`] or the journal, or just an `Option<usize>` class
//! index where `None` means unidentified) and answers how many of each, whether the target is reached, and
//! which percentages fall outside the reference ranges. The classes are the model card's
//! ([`Classes`]); `count`, `run` and `report` all count through here.
//!
//! Reference ranges ([`ADULT_REFERENCE`]) are the normal adult values of MedlinePlus, *Blood differential
//! test* (U.S. National Library of Medicine, <https://medlineplus.gov/ency/article/003657.htm>): neutrophils
//! 40–60 %, lymphocytes 20–40 %, monocytes 2–8 %, eosinophils 1–4 %, basophils 0.5–1 %. They are looked up
//! by class name (ignoring case); a class without a known range (a site model's own class) has no flag.
//! Laboratories differ slightly (many texts give neutrophils 40–70 %); a flag is a prompt to look, not a
//! diagnosis. With 100 cells a percentage carries a sampling error of several points, which is why the
//! report always prints the count next to the percentage.

use serde::Serialize;

use crate::cell::Cell;
pub use crate::classes::{Classes, UNIDENTIFIED};

/// A normal range for one class, in percent of identified white cells.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ReferenceRange {
    /// The class name.
    pub class: &'static str,
    /// Lowest normal percentage.
    pub low: f32,
    /// Highest normal percentage.
    pub high: f32,
}

/// Normal adult differential (MedlinePlus, *Blood differential test*, see the module docs).
pub const ADULT_REFERENCE: [ReferenceRange; 5] = [
    ReferenceRange {
        class: "EOSINOPHIL",
        low: 1.0,
        high: 4.0,
    },
    ReferenceRange {
        class: "LYMPHOCYTE",
        low: 20.0,
        high: 40.0,
    },
    ReferenceRange {
        class: "MONOCYTE",
        low: 2.0,
        high: 8.0,
    },
    ReferenceRange {
        class: "NEUTROPHIL",
        low: 40.0,
        high: 60.0,
    },
    ReferenceRange {
        class: "BASOPHIL",
        low: 0.5,
        high: 1.0,
    },
];

/// The adult reference range of a class, by name (ignoring case); `None` for a class without one.
pub fn reference_range(class: &str) -> Option<&'static ReferenceRange> {
    ADULT_REFERENCE
        .iter()
        .find(|r| r.class.eq_ignore_ascii_case(class.trim()))
}

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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flag {
    /// The class, as the model names it.
    pub class: String,
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

/// A running white-cell differential: counts per class of the model plus unidentified cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Differential {
    classes: Classes,
    counts: Vec<u32>,
    unidentified: u32,
}

impl Differential {
    /// An empty count over these classes.
    pub fn new(classes: Classes) -> Self {
        Differential {
            counts: vec![0; classes.len()],
            classes,
            unidentified: 0,
        }
    }

    /// The classes counted.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Counts one cell (an untyped cell counts as unidentified; one a reviewer marked not a white cell
    /// does not count).
    pub fn add(&mut self, cell: &Cell) {
        if cell.is_white_cell() {
            self.add_class(cell.class());
        }
    }

    /// Counts one cell of a class index (`None`, or an index past the classes: unidentified).
    pub fn add_class(&mut self, class: Option<usize>) {
        match class.and_then(|c| self.counts.get_mut(c)) {
            Some(n) => *n += 1,
            None => self.unidentified += 1,
        }
    }

    /// Cells of a class index (`None`: unidentified).
    pub fn count(&self, class: Option<usize>) -> u32 {
        match class {
            Some(c) => self.counts.get(c).copied().unwrap_or(0),
            None => self.unidentified,
        }
    }

    /// Counts in class order.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// Unidentified cells.
    pub fn unidentified(&self) -> u32 {
        self.unidentified
    }

    /// Identified (typed) cells.
    pub fn identified(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// All counted cells, unidentified included.
    pub fn total(&self) -> u32 {
        self.identified() + self.unidentified
    }

    /// Percentage of identified cells of each class, in class order (all 0 when none is identified).
    pub fn percentages(&self) -> Vec<f32> {
        let n = self.identified();
        self.counts
            .iter()
            .map(|&c| {
                if n == 0 {
                    0.0
                } else {
                    100.0 * c as f32 / n as f32
                }
            })
            .collect()
    }

    /// Classes outside their [`ADULT_REFERENCE`] range (percent of identified cells), in class order;
    /// none before any cell is identified, and none for a class without a known range.
    pub fn flags(&self) -> Vec<Flag> {
        if self.identified() == 0 {
            return Vec::new();
        }
        self.classes
            .iter()
            .zip(self.percentages())
            .filter_map(|(name, p)| {
                let r = reference_range(name)?;
                let direction = if p < r.low {
                    Direction::Low
                } else if p > r.high {
                    Direction::High
                } else {
                    return None;
                };
                Some(Flag {
                    class: name.to_string(),
                    percent: p,
                    direction,
                    range: *r,
                })
            })
            .collect()
    }

    /// `{"<class>": n, ..., "UNIDENTIFIED": n}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (name, &n) in self.classes.iter().zip(&self.counts) {
            m.insert(name.into(), n.into());
        }
        m.insert(UNIDENTIFIED.into(), self.unidentified.into());
        serde_json::Value::Object(m)
    }
}

/// Stop when this many cells are counted; 0 means no limit.
///
/// Unidentified cells count toward the target, as a person's manual differential counts every white cell
/// it sees; the report says how many of them were typed ("100 cells counted, 79 typed").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StopRule {
    /// The target number of cells (0: no limit).
    pub target: u32,
}

impl Default for StopRule {
    /// The usual manual differential: 100 cells.
    fn default() -> Self {
        StopRule { target: 100 }
    }
}

impl StopRule {
    /// Whether the rule has a target at all (`target > 0`).
    pub fn limited(&self) -> bool {
        self.target > 0
    }

    /// Whether counting is done.
    pub fn reached(&self, d: &Differential) -> bool {
        self.reached_at(d.total())
    }

    /// Whether counting is done once `counted` cells are counted.
    pub fn reached_at(&self, counted: u32) -> bool {
        self.limited() && counted >= self.target
    }

    /// How many more cells may be counted after `counted` (`None`: no limit).
    pub fn remaining(&self, counted: u32) -> Option<u32> {
        self.limited().then(|| self.target.saturating_sub(counted))
    }
}

impl std::fmt::Display for StopRule {
    /// `target 100` or `no target`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.limited() {
            write!(f, "target {}", self.target)
        } else {
            f.write_str("no target")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four() -> Classes {
        Classes::new(["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]).unwrap()
    }

    #[test]
    fn counts_total_and_json() {
        let mut d = Differential::new(four());
        d.add_class(Some(3));
        d.add_class(Some(3));
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
        let mut d = Differential::new(four());
        let r = StopRule { target: 2 };
        assert!(!r.reached(&d));
        d.add_class(None);
        d.add_class(Some(2));
        assert!(r.reached(&d));
        assert_eq!(r.remaining(1), Some(1));
        assert_eq!(r.remaining(5), Some(0));
        let none = StopRule { target: 0 };
        assert!(!none.reached(&d));
        assert_eq!(none.remaining(1_000), None);
        assert_eq!(none.to_string(), "no target");
        assert_eq!(r.to_string(), "target 2");
    }

    #[test]
    fn normal_differential_has_no_flags_abnormal_does() {
        let mut d = Differential::new(four());
        for (c, n) in [(3, 55), (1, 35), (2, 6), (0, 3)] {
            (0..n).for_each(|_| d.add_class(Some(c)));
        }
        (0..7).for_each(|_| d.add_class(None));
        assert!(d.flags().is_empty(), "{:?}", d.flags());
        (0..20).for_each(|_| d.add_class(Some(0)));
        let f = d.flags();
        assert!(f
            .iter()
            .any(|f| f.class == "EOSINOPHIL" && f.direction == Direction::High));
        assert!(f[0].to_string().contains("reference"));
        assert!(Differential::new(four()).flags().is_empty());
    }

    #[test]
    fn ranges_are_found_by_name_and_other_classes_have_no_flag() {
        let site = Classes::new(["neutrophil", "Basophil", "BLAST"]).unwrap();
        let mut d = Differential::new(site);
        (0..50).for_each(|_| d.add_class(Some(0)));
        (0..10).for_each(|_| d.add_class(Some(1)));
        (0..40).for_each(|_| d.add_class(Some(2)));
        let f = d.flags();
        // neutrophil 50 % is normal, Basophil 10 % is high, BLAST has no reference range.
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].class, "Basophil");
        assert_eq!(f[0].direction, Direction::High);
        assert_eq!(reference_range("basophil").unwrap().low, 0.5);
        assert!(reference_range("BLAST").is_none());
    }
}
