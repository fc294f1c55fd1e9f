//! STUB: replaced by the real validation module.
use super::status::FieldError;
use serde_json::{Map, Value};
pub fn validate_object_meta(_meta: &Map<String, Value>, _namespaced: bool) -> Vec<FieldError> {
    vec![]
}
pub fn validate_object_meta_update(
    _new: &Map<String, Value>,
    _old: &Map<String, Value>,
) -> Vec<FieldError> {
    vec![]
}
pub fn generate_name(prefix: &str) -> String {
    format!("{prefix}{}", rand::random::<u16>())
}
