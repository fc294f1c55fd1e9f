//! STUB: replaced by the real selector module.
use serde_json::{Map, Value};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}
#[derive(Debug, Clone)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}
#[derive(Debug, Clone, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}
impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        if s.is_empty() {
            Ok(Self::default())
        } else {
            Err("stub".into())
        }
    }
    pub fn everything() -> Self {
        Self::default()
    }
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
    pub fn matches(&self, _labels: Option<&Map<String, Value>>) -> bool {
        true
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}
#[derive(Debug, Clone)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}
impl FieldSelector {
    pub fn parse(s: &str, _supported: &[&str]) -> Result<FieldSelector, String> {
        if s.is_empty() {
            Ok(Self::default())
        } else {
            Err("stub".into())
        }
    }
    pub fn matches(&self, _get: impl Fn(&str) -> Option<&str>) -> bool {
        true
    }
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
    pub fn exact(&self, _field: &str) -> Option<&str> {
        None
    }
}
