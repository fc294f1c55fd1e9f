//! Options of the verbs (ListOptions, DeleteOptions, the write options), parsed from query
//! parameters and bodies with kube's rules and messages.

use base64::Engine;
use serde_json::{json, Value};

use crate::k8s::object;
use crate::k8s::query::Query;
use crate::k8s::resource::ResourceDef;
use crate::k8s::selector::{FieldSelector, LabelSelector};
use crate::k8s::status::{ApiError, FieldError, ResourceRef};

/// The fields custom resources support in field selectors; cluster-scoped kinds have no
/// namespace to select on, as in kube.
pub const SELECTABLE_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
const CLUSTER_SELECTABLE_FIELDS: &[&str] = &["metadata.name"];

fn int(q: &Query, key: &str) -> Result<Option<i64>, ApiError> {
    q.int(key).map_err(ApiError::bad_request)
}

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub timeout_seconds: Option<i64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: Option<bool>,
}

impl ListOptions {
    pub fn parse(q: &Query, namespaced: bool) -> Result<Self, ApiError> {
        let selectable = if namespaced {
            SELECTABLE_FIELDS
        } else {
            CLUSTER_SELECTABLE_FIELDS
        };
        let labels = match q.get("labelSelector") {
            Some(s) => LabelSelector::parse(s).map_err(ApiError::bad_request)?,
            None => LabelSelector::everything(),
        };
        let fields = match q.get("fieldSelector") {
            Some(s) => FieldSelector::parse(s, selectable).map_err(ApiError::bad_request)?,
            None => FieldSelector::parse("", selectable).map_err(ApiError::bad_request)?,
        };
        let limit = match int(q, "limit")? {
            None | Some(0) => None,
            Some(n) if n < 0 => {
                return Err(ApiError::bad_request(format!(
                    "limit: Invalid value: {n}: must be greater than or equal to 0"
                )))
            }
            Some(n) => Some(n as usize),
        };
        let continue_token = q.non_empty("continue").map(str::to_string);
        let resource_version = q.non_empty("resourceVersion").map(str::to_string);
        let resource_version_match = q.non_empty("resourceVersionMatch").map(str::to_string);
        if continue_token.is_some() && resource_version.as_deref().is_some_and(|v| v != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        if let Some(m) = &resource_version_match {
            if !matches!(m.as_str(), "NotOlderThan" | "Exact") {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        }
        if let Some(rv) = &resource_version {
            if rv.parse::<u64>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version {rv:?}: resourceVersion must be a decimal integer"
                )));
            }
        }
        Ok(ListOptions {
            labels,
            fields,
            limit,
            continue_token,
            resource_version,
            resource_version_match,
            watch: q.bool("watch").unwrap_or(false),
            timeout_seconds: int(q, "timeoutSeconds")?,
            allow_watch_bookmarks: q.bool("allowWatchBookmarks").unwrap_or(false),
            send_initial_events: q.bool("sendInitialEvents"),
        })
    }
}

impl ListOptions {
    /// kube's `ValidateListOptions` rules for watches, including WatchList
    /// (`sendInitialEvents`). A client that sends an invalid combination gets 422 and falls
    /// back to LIST then WATCH, as client-go does.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut errs = Vec::new();
        match (self.watch, self.send_initial_events) {
            (false, Some(_)) => errs.push(FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            )),
            (true, Some(_)) => {
                if self.resource_version_match.as_deref() != Some("NotOlderThan") {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    ));
                }
                if !self.allow_watch_bookmarks {
                    errs.push(FieldError::forbidden(
                        "allowWatchBookmarks",
                        "sendInitialEvents requires setting allowWatchBookmarks to true",
                    ));
                }
            }
            (true, None) => {
                if self.resource_version_match.is_some() {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    ));
                }
            }
            (false, None) => {
                if self.resource_version_match.is_some() && self.resource_version.is_none() {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                if self.resource_version_match.as_deref() == Some("Exact")
                    && self.resource_version.as_deref() == Some("0")
                {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                ResourceRef {
                    group: "meta.k8s.io",
                    plural: "listoptions",
                    kind: "ListOptions",
                },
                "",
                errs,
            ))
        }
    }
}

/// What a write does with fields the schema does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and say so in `Warning` headers: kube's default.
    #[default]
    Warn,
    /// Refuse the request with 400.
    Strict,
}

/// Options shared by create, update, patch and delete.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// The manager recorded in managedFields.
    pub field_manager: String,
    pub field_validation: FieldValidation,
    /// What the request is warned about (kube's `Warning` headers), gathered by the
    /// registry while it writes and sent by the HTTP layer with the response. Shared by
    /// clones, so a copy handed down still reports to the request's list.
    pub warnings: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WriteOptions {
    /// Adds a warning once (kube drops repeats of the same text).
    pub fn warn(&self, text: String) {
        let mut w = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !w.contains(&text) {
            w.push(text);
        }
    }

    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl WriteOptions {
    pub fn parse(q: &Query, user_agent: Option<&str>) -> Result<Self, ApiError> {
        let mut dry_run = false;
        for v in q.all("dryRun") {
            match v {
                "All" => dry_run = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                    )));
                }
            }
        }
        let field_manager = match q.get("fieldManager") {
            Some(m) if !m.is_empty() => {
                if m.len() > 128 {
                    return Err(ApiError::bad_request(format!(
                        "fieldManager: Too long: may not be more than 128 bytes (got {} bytes)",
                        m.len()
                    )));
                }
                m.to_string()
            }
            // kube names the manager after the client's user agent, up to the first '/'.
            _ => user_agent
                .and_then(|u| u.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .chars()
                .take(128)
                .collect(),
        };
        Ok(WriteOptions {
            dry_run,
            field_manager,
            field_validation: FieldValidation::default(),
            warnings: Default::default(),
        })
    }
}

/// `fieldValidation` of a create, update or patch, checked as kube's
/// `ValidateFieldValidation`: another value is 422 on the verb's options kind
/// (`CreateOptions`, `UpdateOptions` or `PatchOptions`). A delete has no such option.
pub fn field_validation(
    q: &Query,
    options_kind: &'static str,
) -> Result<FieldValidation, ApiError> {
    Ok(match q.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => FieldValidation::Warn,
        "Ignore" => FieldValidation::Ignore,
        "Strict" => FieldValidation::Strict,
        other => {
            let plural = match options_kind {
                "CreateOptions" => "createoptions",
                "UpdateOptions" => "updateoptions",
                _ => "patchoptions",
            };
            return Err(ApiError::invalid(
                ResourceRef {
                    group: "meta.k8s.io",
                    plural,
                    kind: options_kind,
                },
                "",
                vec![FieldError::not_supported(
                    "fieldValidation",
                    Value::String(other.to_string()),
                    &["", "Ignore", "Strict", "Warn"],
                )],
            ));
        }
    })
}

/// `force` of a PATCH, checked against the patch type as kube's `ValidatePatchOptions`
/// does: only apply takes it, and apply needs an explicit `fieldManager`.
pub fn patch_force(q: &Query, apply: bool) -> Result<bool, ApiError> {
    let force = match q.get("force") {
        None => None,
        Some(v) => Some(match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "force: Invalid value: {other:?}: not a boolean"
                )))
            }
        }),
    };
    let mut errs = Vec::new();
    if !apply && force.is_some() {
        errs.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if apply && q.get("fieldManager").is_none_or(str::is_empty) {
        errs.push(FieldError::required(
            "fieldManager",
            "is required for apply patch",
        ));
    }
    if errs.is_empty() {
        Ok(force.unwrap_or(false))
    } else {
        Err(ApiError::invalid(
            ResourceRef {
                group: "meta.k8s.io",
                plural: "patchoptions",
                kind: "PatchOptions",
            },
            "",
            errs,
        ))
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun: ["All"]` in the body; the query parameter form is in [`WriteOptions`].
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub grace_period_seconds: Option<i64>,
}

impl DeleteOptions {
    /// From an optional `DeleteOptions` body and query parameters (the body wins, as in kube).
    pub fn parse(body: &[u8], q: &Query) -> Result<Self, ApiError> {
        let mut o = DeleteOptions {
            propagation_policy: q.get("propagationPolicy").map(str::to_string),
            orphan_dependents: q.bool("orphanDependents"),
            grace_period_seconds: int(q, "gracePeriodSeconds")?,
            ..Default::default()
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
            if !v.is_object() {
                return Err(ApiError::bad_request(
                    "invalid DeleteOptions: the body must be a JSON object",
                ));
            }
            let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
            o.precondition_uid = s("/preconditions/uid");
            o.precondition_rv = s("/preconditions/resourceVersion");
            if let Some(p) = s("/propagationPolicy") {
                o.propagation_policy = Some(p);
            }
            if let Some(b) = v.get("orphanDependents").and_then(Value::as_bool) {
                o.orphan_dependents = Some(b);
            }
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period_seconds = Some(g);
            }
            match v.get("dryRun") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        match item.as_str() {
                            Some("All") => o.dry_run = true,
                            _ => {
                                return Err(ApiError::bad_request(format!(
                                    "dryRun: Unsupported value: {item}: supported values: \"All\""
                                )))
                            }
                        }
                    }
                }
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid DeleteOptions: dryRun must be a list, got {other}"
                    )))
                }
            }
        }
        if let Some(p) = &o.propagation_policy {
            if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
                return Err(ApiError::invalid(
                    ResourceRef {
                        group: "meta.k8s.io",
                        plural: "deleteoptions",
                        kind: "DeleteOptions",
                    },
                    "",
                    vec![FieldError::not_supported(
                        "propagationPolicy",
                        json!(p),
                        &["Foreground", "Background", "Orphan"],
                    )],
                ));
            }
            if o.orphan_dependents.is_some() {
                return Err(ApiError::invalid(
                    ResourceRef {
                        group: "meta.k8s.io",
                        plural: "deleteoptions",
                        kind: "DeleteOptions",
                    },
                    "",
                    vec![FieldError::invalid(
                        "propagationPolicy",
                        json!(p),
                        "orphanDependents and deletionPropagation cannot be both set",
                    )],
                ));
            }
        }
        Ok(o)
    }

    /// The finalizer kube's garbage collector honours for the requested propagation.
    pub fn gc_finalizer(&self) -> Option<&'static str> {
        match (self.propagation_policy.as_deref(), self.orphan_dependents) {
            (Some("Orphan"), _) | (None, Some(true)) => Some("orphan"),
            (Some("Foreground"), _) => Some("foregroundDeletion"),
            _ => None,
        }
    }

    pub fn check_preconditions(&self, def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
        let name = object::name(obj);
        if let Some(uid) = &self.precondition_uid {
            if uid != object::uid(obj) {
                return Err(ApiError::conflict(
                    def.resource_ref(),
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::uid(obj)
                    ),
                ));
            }
        }
        if let Some(rv) = &self.precondition_rv {
            if rv != object::resource_version(obj) {
                return Err(ApiError::conflict(
                    def.resource_ref(),
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        object::resource_version(obj)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Where the next page of a list starts, and the resourceVersion of the listing it continues.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinueToken {
    pub resource_version: i64,
    pub namespace: String,
    pub name: String,
    /// How many objects in the list's scope come before the next page, when known: a
    /// page's `remainingItemCount` is then a subtraction instead of a count of the rest.
    pub offset: Option<u64>,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let mut v = json!({"v": "ark.mckinsey.com/continue-v1", "rv": self.resource_version, "ns": self.namespace, "name": self.name});
        if let Some(n) = self.offset {
            v["n"] = json!(n);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = |why: String| {
            ApiError::bad_request(format!(
                "invalid continue token: continue key is not valid: {why}"
            ))
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| bad(e.to_string()))?;
        let v: Value = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
        if v.get("v").and_then(Value::as_str) != Some("ark.mckinsey.com/continue-v1") {
            return Err(bad("unknown token version".into()));
        }
        let rv = v
            .get("rv")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("missing resourceVersion".into()))?;
        let ns = v
            .get("ns")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing start key".into()))?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing start key".into()))?;
        Ok(ContinueToken {
            resource_version: rv,
            namespace: ns.into(),
            name: name.into(),
            // Absent from tokens of earlier versions: the rest is then counted.
            offset: v.get("n").and_then(Value::as_u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_round_trips_and_garbage_is_a_bad_request() {
        let t = ContinueToken {
            resource_version: 42,
            namespace: "ns".into(),
            name: "a".into(),
            offset: Some(500),
        };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        let older = ContinueToken { offset: None, ..t };
        assert_eq!(ContinueToken::decode(&older.encode()).unwrap(), older);
        let e = ContinueToken::decode("!!!").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e
            .message
            .starts_with("invalid continue token: continue key is not valid"));
    }

    fn q(pairs: &[(&str, &str)]) -> Query {
        let qs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Query::parse(&qs.join("&")).unwrap()
    }

    #[test]
    fn watch_list_needs_not_older_than_and_bookmarks() {
        let ok = ListOptions::parse(
            &q(&[
                ("watch", "true"),
                ("sendInitialEvents", "true"),
                ("resourceVersionMatch", "NotOlderThan"),
                ("allowWatchBookmarks", "true"),
            ]),
            true,
        )
        .unwrap();
        ok.validate().unwrap();
        let e = ListOptions::parse(
            &q(&[("watch", "true"), ("sendInitialEvents", "true")]),
            true,
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .starts_with("ListOptions.meta.k8s.io \"\" is invalid: ["),
            "{}",
            e.message
        );
        assert!(e
            .message
            .contains("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
        assert!(e
            .message
            .contains("sendInitialEvents requires setting allowWatchBookmarks to true"));
        let e = ListOptions::parse(&q(&[("sendInitialEvents", "true")]), true)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e
            .message
            .contains("sendInitialEvents is forbidden for list"));
        let e = ListOptions::parse(
            &q(&[("watch", "true"), ("resourceVersionMatch", "NotOlderThan")]),
            true,
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(e
            .message
            .contains("forbidden for watch unless sendInitialEvents is provided"));
    }

    #[test]
    fn unknown_dry_run_value_is_rejected() {
        assert_eq!(
            WriteOptions::parse(&q(&[("dryRun", "Some")]), None)
                .unwrap_err()
                .code,
            400
        );
        assert!(
            WriteOptions::parse(
                &q(&[("dryRun", "All")]),
                Some("kubectl/v1.35.0 (linux/amd64)")
            )
            .unwrap()
            .dry_run
        );
    }

    #[test]
    fn force_is_for_apply_only_and_apply_names_its_manager() {
        let e = patch_force(&q(&[("force", "true")]), false).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
        );
        let e = patch_force(&q(&[("force", "true")]), true).unwrap_err();
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        assert!(patch_force(&q(&[("force", "true"), ("fieldManager", "m")]), true).unwrap());
        assert!(!patch_force(&q(&[("fieldManager", "m")]), true).unwrap());
        assert_eq!(
            patch_force(&q(&[("force", "yes")]), true).unwrap_err().code,
            400
        );
    }

    #[test]
    fn field_manager_defaults_to_user_agent_prefix() {
        let o =
            WriteOptions::parse(&Query::default(), Some("kubectl/v1.35.0 (linux/amd64)")).unwrap();
        assert_eq!(o.field_manager, "kubectl");
    }

    #[test]
    fn dry_run_in_the_delete_body_is_honoured() {
        assert!(
            DeleteOptions::parse(
                br#"{"propagationPolicy":"Background","dryRun":["All"]}"#,
                &Query::default()
            )
            .unwrap()
            .dry_run
        );
        assert_eq!(
            DeleteOptions::parse(br#"{"dryRun":["Some"]}"#, &Query::default())
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn orphan_policy_adds_the_orphan_finalizer() {
        let o =
            DeleteOptions::parse(br#"{"propagationPolicy":"Orphan"}"#, &Query::default()).unwrap();
        assert_eq!(o.gc_finalizer(), Some("orphan"));
        let e = DeleteOptions::parse(br#"{"propagationPolicy":"Sideways"}"#, &Query::default())
            .unwrap_err();
        assert_eq!(e.code, 422);
    }
}
