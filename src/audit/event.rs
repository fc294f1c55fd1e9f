//! The `audit.k8s.io/v1` Event, encoded as kube-apiserver's log backend writes it: the
//! fields in the Go struct's order, empty optional fields left out, `metav1.MicroTime`
//! timestamps, and Go's `encoding/json` string escaping (`&`, `<`, `>` as `\u0026`, ...),
//! so a line from this server and one from kube-apiserver read the same to any tool.
//!
//! Pure.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{Level, Stage};
use crate::auth::user::UserInfo;

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Always `Event`.
    pub kind: &'static str,
    /// Always `audit.k8s.io/v1`.
    pub api_version: &'static str,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    /// Always written, `{}` for a request whose authentication failed.
    pub user: EventUser,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    pub request_received_timestamp: MicroTime,
    pub stage_timestamp: MicroTime,
    /// Sorted by key, as Go writes a map.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `authentication/v1` `UserInfo`: every field left out when empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EventUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for EventUser {
    fn from(u: &UserInfo) -> Self {
        EventUser {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.clone(),
        }
    }
}

/// What the request was about, in the order and with the omissions of kube's
/// `ObjectReference`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The part of a `metav1.Status` kube copies into an event: status, message, reason,
/// details and code. `metadata` is always `{}`, as Go writes an empty `ListMeta`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ResponseStatus {
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl ResponseStatus {
    /// Only the code: what a response that is not a Status records.
    pub fn code(code: u16) -> ResponseStatus {
        ResponseStatus {
            code,
            ..Default::default()
        }
    }

    /// The fields kube copies from a `metav1.Status` body; `code` is the HTTP status sent,
    /// which kube sets after copying.
    pub fn from_status(status: &Value, code: u16) -> ResponseStatus {
        let text = |k: &str| {
            status
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        ResponseStatus {
            metadata: Map::new(),
            status: text("status"),
            message: text("message"),
            reason: text("reason"),
            details: status.get("details").filter(|d| !d.is_null()).cloned(),
            code,
        }
    }
}

/// `metav1.MicroTime`: RFC 3339 in UTC with exactly six fractional digits, truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MicroTime(pub DateTime<Utc>);

impl std::fmt::Display for MicroTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

impl Serialize for MicroTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Event {
    /// The event as one line of the log: JSON with Go's escaping, then a newline.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
        // Serializing a tree of strings, maps and numbers into memory cannot fail: every
        // key is a string and the writer is a Vec.
        if self.serialize(&mut ser).is_err() {
            out.clear();
            out.extend_from_slice(b"{}");
        }
        out.push(b'\n');
        out
    }
}

/// Go's `encoding/json` escapes `<`, `>` and `&` (HTML safety) and U+2028/U+2029 (JavaScript
/// safety) in every string; serde_json escapes only what JSON requires. The rest of the
/// escaping (`"`, `\`, control characters) is the same in both.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// A copy of an object (or a List's items, or a Table's row objects) without
/// `metadata.managedFields`, for policies with `omitManagedFields`.
pub fn without_managed_fields(obj: &Value) -> Value {
    let mut copy = obj.clone();
    strip_managed_fields(&mut copy);
    if let Some(items) = copy.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip_managed_fields);
    }
    if copy.get("kind").and_then(Value::as_str) == Some("Table") {
        if let Some(rows) = copy.get_mut("rows").and_then(Value::as_array_mut) {
            for row in rows {
                if let Some(o) = row.get_mut("object") {
                    strip_managed_fields(o);
                }
            }
        }
    }
    copy
}

fn strip_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn micro_time_has_six_digits_truncated_in_utc() {
        let t = Utc.with_ymd_and_hms(2026, 9, 15, 14, 26, 53).unwrap()
            + chrono::Duration::nanoseconds(946_487_999);
        assert_eq!(MicroTime(t).to_string(), "2026-09-15T14:26:53.946487Z");
        let whole = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(MicroTime(whole).to_string(), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
        json!({"a<b>": "x&y \u{2028}\u{2029} \"q\" \\ \n\t\u{1} é"})
            .serialize(&mut ser)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a\u003cb\u003e":"x\u0026y \u2028\u2029 \"q\" \\ \n\t\u0001 é"}"#
        );
    }

    #[test]
    fn a_response_status_copies_kubes_subset_of_a_status() {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {"resourceVersion": "9"},
            "status": "Failure", "message": "agents.ark.mckinsey.com \"x\" not found",
            "reason": "NotFound", "details": {"name": "x", "group": "ark.mckinsey.com", "kind": "agents"},
            "code": 404
        });
        let rs = ResponseStatus::from_status(&status, 404);
        assert_eq!(
            serde_json::to_value(&rs).unwrap(),
            json!({"metadata": {}, "status": "Failure", "message": "agents.ark.mckinsey.com \"x\" not found",
                   "reason": "NotFound", "details": {"name": "x", "group": "ark.mckinsey.com", "kind": "agents"}, "code": 404})
        );
        assert_eq!(
            serde_json::to_string(&ResponseStatus::code(200)).unwrap(),
            r#"{"metadata":{},"code":200}"#
        );
    }

    #[test]
    fn managed_fields_are_dropped_from_objects_lists_and_tables() {
        let mf = json!([{"manager": "kubectl"}]);
        let obj = json!({"metadata": {"name": "a", "managedFields": mf}});
        assert_eq!(
            without_managed_fields(&obj),
            json!({"metadata": {"name": "a"}})
        );
        let list = json!({"kind": "AgentList", "items": [obj.clone(), obj.clone()]});
        assert_eq!(
            without_managed_fields(&list)["items"],
            json!([{"metadata": {"name": "a"}}, {"metadata": {"name": "a"}}])
        );
        let table = json!({"kind": "Table", "rows": [{"cells": [], "object": obj}]});
        assert_eq!(
            without_managed_fields(&table)["rows"][0]["object"],
            json!({"metadata": {"name": "a"}})
        );
    }
}
