//! The classes a model types, in its output order, as its card names them.
//!
//! Nothing in the device hard-codes how many white-cell types there are or what they are called: the model
//! card's `classes` list is the one source, so a five-class model (with `BASOPHIL`) or a site model with
//! its own names works through classify, count, run, the reports and the journal. A cell the model is not
//! sure of is [`UNIDENTIFIED`], which is never a class name.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The report's name for cells below the model's confidence threshold.
pub const UNIDENTIFIED: &str = "UNIDENTIFIED";

/// The review's name for a cell a person marked as not a white cell (debris, a smudge): never counted.
pub const NOT_WHITE_CELL: &str = "NOT_A_WHITE_CELL";

/// Most classes a model may have (a card listing more is refused, not a panic or a huge report).
pub const MAX_CLASSES: usize = 64;

/// Class names in model output order; cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Classes(Arc<[String]>);

/// Why a class list is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassesError {
    /// No class at all.
    #[error("the class list is empty")]
    Empty,
    /// More than [`MAX_CLASSES`].
    #[error("{0} classes, at most {MAX_CLASSES} are supported")]
    TooMany(usize),
    /// A blank name, or one with a character a CSV header or file name would mangle.
    #[error("class name {0:?} is blank or holds a comma, quote, slash or control character")]
    BadName(String),
    /// Two names that differ only in case.
    #[error("class {0:?} is listed twice (names are compared ignoring case)")]
    Duplicate(String),
    /// `UNIDENTIFIED` (an untyped cell) and `NOT_A_WHITE_CELL` (a review verdict) are not classes.
    #[error(
        "{UNIDENTIFIED:?} and {NOT_WHITE_CELL:?} cannot be class names: they are the report's words for \
         an untyped cell and for what is not a white cell"
    )]
    Reserved,
}

impl Classes {
    /// A class list from names in model output order (trimmed; case kept as given).
    pub fn new<I, S>(names: I) -> Result<Self, ClassesError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names
            .into_iter()
            .map(|s| s.into().trim().to_string())
            .collect();
        if names.is_empty() {
            return Err(ClassesError::Empty);
        }
        if names.len() > MAX_CLASSES {
            return Err(ClassesError::TooMany(names.len()));
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty()
                || n.chars()
                    .any(|c| c.is_control() || matches!(c, ',' | '"' | '/' | '\\'))
            {
                return Err(ClassesError::BadName(n.clone()));
            }
            if n.eq_ignore_ascii_case(UNIDENTIFIED) || n.eq_ignore_ascii_case(NOT_WHITE_CELL) {
                return Err(ClassesError::Reserved);
            }
            if names[..i].iter().any(|m| m.eq_ignore_ascii_case(n)) {
                return Err(ClassesError::Duplicate(n.clone()));
            }
        }
        Ok(Classes(names.into()))
    }

    /// Number of classes (the model's output width).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a class list has at least one class.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of class `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.0.get(index).map(String::as_str)
    }

    /// The name of a cell's type: the class name, or [`UNIDENTIFIED`] for `None` (and for an index past
    /// the end, which a well-formed caller never passes).
    pub fn label(&self, class: Option<usize>) -> &str {
        class.and_then(|i| self.get(i)).unwrap_or(UNIDENTIFIED)
    }

    /// The index of a class name, ignoring case and surrounding blanks.
    pub fn index(&self, name: &str) -> Option<usize> {
        let name = name.trim();
        self.0.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// Parses a cell's type: a class name (any case) or [`UNIDENTIFIED`] (`Ok(None)`); anything else is
    /// `Err` with the name.
    pub fn parse_label(&self, name: &str) -> Result<Option<usize>, String> {
        if name.trim().eq_ignore_ascii_case(UNIDENTIFIED) {
            return Ok(None);
        }
        self.index(name)
            .map(Some)
            .ok_or_else(|| format!("{name:?} is not one of the classes {:?}", &*self.0))
    }

    /// The names in output order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(String::as_str)
    }

    /// The names in output order.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for Classes {
    type Error = ClassesError;
    fn try_from(v: Vec<String>) -> Result<Self, ClassesError> {
        Classes::new(v)
    }
}

impl From<Classes> for Vec<String> {
    fn from(c: Classes) -> Self {
        c.0.to_vec()
    }
}

impl std::fmt::Display for Classes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_matched_ignoring_case() {
        let c = Classes::new(["EOSINOPHIL", "Lymphocyte", "BASOPHIL"]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.index("lymphocyte"), Some(1));
        assert_eq!(c.index(" basophil "), Some(2));
        assert_eq!(c.index("MONOCYTE"), None);
        assert_eq!(c.label(Some(0)), "EOSINOPHIL");
        assert_eq!(c.label(None), UNIDENTIFIED);
        assert_eq!(c.parse_label("unidentified"), Ok(None));
        assert_eq!(c.parse_label("Basophil"), Ok(Some(2)));
        assert!(c.parse_label("BLAST").unwrap_err().contains("BLAST"));
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(Classes::new(Vec::<String>::new()), Err(ClassesError::Empty));
        assert_eq!(
            Classes::new(["A", "a"]),
            Err(ClassesError::Duplicate("a".into()))
        );
        assert_eq!(
            Classes::new(["A", "Unidentified"]),
            Err(ClassesError::Reserved)
        );
        assert!(matches!(
            Classes::new(["A,B"]),
            Err(ClassesError::BadName(_))
        ));
        assert!(matches!(Classes::new([" "]), Err(ClassesError::BadName(_))));
        let many: Vec<String> = (0..65).map(|i| format!("C{i}")).collect();
        assert_eq!(Classes::new(many), Err(ClassesError::TooMany(65)));
    }

    #[test]
    fn serialises_as_a_list() {
        let c = Classes::new(["A", "B"]).unwrap();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"["A","B"]"#);
        assert_eq!(serde_json::from_str::<Classes>(&s).unwrap(), c);
        assert!(serde_json::from_str::<Classes>(r#"["A","a"]"#).is_err());
    }
}
