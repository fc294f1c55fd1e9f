//! The `audit.k8s.io/v1` Policy: parsed from YAML or JSON, validated as k8s.io/apiserver's
//! `validation.ValidatePolicy` does, and evaluated as its `policyRuleEvaluator`: rules in
//! order, the first match wins, no match means level None.
//!
//! Pure: text in, a policy out; attributes in, a level out.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::{Level, Stage, StageSet};
use crate::auth::attributes::RequestAttributes;
use crate::auth::user::UserInfo;
use crate::k8s::status::FieldError;
use crate::k8s::validation::is_dns1123_subdomain;

pub const API_VERSION: &str = "audit.k8s.io/v1";
pub const KIND: &str = "Policy";

/// A validated policy, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: StageSet,
    omit_managed_fields: bool,
}

/// One rule. A request matches when it matches every field that is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    /// The rule's own omitted stages joined with the policy's, as kube joins them when it
    /// builds the evaluator.
    pub omit_stages: StageSet,
    /// Overrides the policy's `omitManagedFields` when set.
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    /// `""` is the core group, `*` every group.
    #[serde(default, deserialize_with = "nullable")]
    pub group: String,
    /// `agents`, `agents/status`, `*`, `agents/*`, `*/status`; empty means every resource.
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub resource_names: Vec<String>,
}

/// What the policy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestAuditConfig {
    pub level: Level,
    pub omit_stages: StageSet,
    pub omit_managed_fields: bool,
}

/// A policy and what was tolerated while reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPolicy {
    pub policy: Policy,
    /// Unknown fields, as kube's strict decoder reports them before it falls back to
    /// lenient decoding: the policy is used, and the caller should log these.
    pub warnings: Vec<String>,
}

/// Why a policy file was refused. Every variant means the same to the caller (refuse to
/// start and show the message); they are separate so tests and messages can be precise.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("failed decoding: {0}")]
    Syntax(String),
    #[error("failed decoding: {field}: {message}")]
    Decode { field: String, message: String },
    #[error("apiVersion {0:?} is not supported: an audit policy is apiVersion audit.k8s.io/v1")]
    ApiVersion(String),
    #[error("kind {0:?} is not supported: an audit policy is kind Policy")]
    Kind(String),
    /// Validation failures, each naming its field (`rules[2].level`).
    #[error("{}", aggregate(.0))]
    Invalid(Vec<FieldError>),
    #[error("loaded illegal policy with 0 rules")]
    NoRules,
}

/// Kube's `utilerrors.Aggregate` wording: one error alone, several in brackets.
fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let all: Vec<String> = many.iter().map(|e| e.to_string()).collect();
            format!("[{}]", all.join(", "))
        }
    }
}

impl Policy {
    /// A policy of one rule: every request at `level`. For a chart's `audit.level`.
    pub fn default_for_level(level: Level) -> Policy {
        Policy {
            rules: vec![Rule {
                level,
                users: vec![],
                user_groups: vec![],
                verbs: vec![],
                resources: vec![],
                namespaces: vec![],
                non_resource_urls: vec![],
                omit_stages: StageSet::default(),
                omit_managed_fields: None,
            }],
            omit_stages: StageSet::default(),
            omit_managed_fields: false,
        }
    }

    /// Parses a Policy from YAML or JSON.
    pub fn parse(text: &str) -> Result<ParsedPolicy, PolicyError> {
        let doc: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
        };
        let Value::Object(doc) = doc else {
            return Err(PolicyError::Syntax(
                "the policy is not an object (expected apiVersion, kind and rules)".into(),
            ));
        };
        match doc.get("apiVersion") {
            Some(Value::String(v)) if v == API_VERSION => {}
            other => return Err(PolicyError::ApiVersion(string_of(other))),
        }
        match doc.get("kind") {
            Some(Value::String(k)) if k == KIND => {}
            other => return Err(PolicyError::Kind(string_of(other))),
        }
        let mut warnings = Vec::new();
        unknown_fields(&doc, &Shape::Policy, "", &mut warnings);
        let raw = RawPolicy::from_doc(&doc)?;
        let policy = raw.validate()?;
        Ok(ParsedPolicy { policy, warnings })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The level and omitted stages for a request. `user` is `None` for a request whose
    /// authentication failed: rules naming users or groups then never match.
    pub fn evaluate(
        &self,
        attrs: &RequestAttributes,
        user: Option<&UserInfo>,
    ) -> RequestAuditConfig {
        for rule in &self.rules {
            if rule.matches(attrs, user) {
                return RequestAuditConfig {
                    level: rule.level,
                    omit_stages: rule.omit_stages,
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        RequestAuditConfig {
            level: Level::None,
            omit_stages: self.omit_stages,
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

impl Rule {
    fn matches(&self, attrs: &RequestAttributes, user: Option<&UserInfo>) -> bool {
        if !self.users.is_empty() && !user.is_some_and(|u| self.users.contains(&u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !user.is_some_and(|u| u.groups.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == attrs.verb.as_str()) {
            return false;
        }
        // A rule naming resources or namespaces is a resource rule, whatever else it
        // names; validation keeps nonResourceURLs out of such rules.
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(attrs);
        }
        if !self.non_resource_urls.is_empty() {
            return attrs.resource.is_none()
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(&attrs.path, spec));
        }
        true
    }

    fn matches_resource(&self, attrs: &RequestAttributes) -> bool {
        let Some(r) = &attrs.resource else {
            return false;
        };
        // Cluster-scoped requests have the namespace "", which a rule names as "".
        if !self.namespaces.is_empty() && !self.namespaces.contains(&r.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if r.subresource.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        self.resources.iter().any(|gr| {
            if gr.group != r.group && gr.group != "*" {
                return false;
            }
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !gr.resource_names.contains(&r.name) {
                return false;
            }
            gr.resources.iter().any(|spec| {
                spec == &combined
                    || spec == "*"
                    || (!r.subresource.is_empty()
                        && spec.strip_prefix("*/") == Some(r.subresource.as_str()))
                    // `agents/*` also matches `agents` itself: kube's matcher does not
                    // require a subresource here, though its documentation implies one.
                    || spec.strip_suffix("/*") == Some(r.resource.as_str())
            })
        })
    }
}

/// `*` matches every path, a trailing `*` a prefix, anything else exactly.
fn path_matches(path: &str, spec: &str) -> bool {
    if spec == "*" || spec == path {
        return true;
    }
    spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*'))
}

fn string_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `null` reads as the empty value, as Go's decoder reads it into a slice or string.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The policy as written, before validation: levels and stages are still strings, so a
/// wrong one is a validation error naming its field rather than a decoding error.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default, deserialize_with = "nullable")]
    level: String,
    #[serde(default, deserialize_with = "nullable")]
    users: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    user_groups: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    verbs: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<GroupResources>,
    #[serde(default, deserialize_with = "nullable")]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", deserialize_with = "nullable")]
    non_resource_urls: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

struct RawPolicy {
    rules: Vec<RawRule>,
    omit_stages: Vec<String>,
    omit_managed_fields: bool,
}

/// Decodes `doc[key]` as `T`, naming `field` in the error; absent and null are `T::default()`.
fn field<T: serde::de::DeserializeOwned + Default>(
    v: Option<&Value>,
    field: &str,
) -> Result<T, PolicyError> {
    match v {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => T::deserialize(v).map_err(|e| PolicyError::Decode {
            field: field.to_string(),
            message: e.to_string(),
        }),
    }
}

impl RawPolicy {
    /// Rule by rule, so a decoding error names the rule it is in.
    fn from_doc(doc: &Map<String, Value>) -> Result<RawPolicy, PolicyError> {
        let rules = match doc.get("rules") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, r)| field::<RawRule>(Some(r), &format!("rules[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(PolicyError::Decode {
                    field: "rules".into(),
                    message: format!("expected a list of rules, got {other}"),
                })
            }
        };
        Ok(RawPolicy {
            rules,
            omit_stages: field(doc.get("omitStages"), "omitStages")?,
            omit_managed_fields: field(doc.get("omitManagedFields"), "omitManagedFields")?,
        })
    }

    fn validate(self) -> Result<Policy, PolicyError> {
        let mut errors = Vec::new();
        let policy_stages = validate_stages(&self.omit_stages, "omitStages", &mut errors);
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, raw) in self.rules.into_iter().enumerate() {
            let path = format!("rules[{i}]");
            let level = validate_level(&raw.level, &format!("{path}.level"), &mut errors);
            validate_non_resource_urls(&raw.non_resource_urls, &path, &mut errors);
            validate_resources(&raw.resources, &path, &mut errors);
            let stages =
                validate_stages(&raw.omit_stages, &format!("{path}.omitStages"), &mut errors);
            if !raw.non_resource_urls.is_empty()
                && (!raw.resources.is_empty() || !raw.namespaces.is_empty())
            {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    json!(raw.non_resource_urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            rules.push(Rule {
                level: level.unwrap_or(Level::None),
                users: raw.users,
                user_groups: raw.user_groups,
                verbs: raw.verbs,
                resources: raw.resources,
                namespaces: raw.namespaces,
                non_resource_urls: raw.non_resource_urls,
                omit_stages: stages.union(policy_stages),
                omit_managed_fields: raw.omit_managed_fields,
            });
        }
        if !errors.is_empty() {
            return Err(PolicyError::Invalid(errors));
        }
        if rules.is_empty() {
            return Err(PolicyError::NoRules);
        }
        Ok(Policy {
            rules,
            omit_stages: policy_stages,
            omit_managed_fields: self.omit_managed_fields,
        })
    }
}

fn validate_level(level: &str, path: &str, errors: &mut Vec<FieldError>) -> Option<Level> {
    if level.is_empty() {
        errors.push(FieldError::required(path, ""));
        return None;
    }
    let parsed = Level::parse(level);
    if parsed.is_none() {
        let allowed = Level::ALL.map(Level::as_str);
        errors.push(FieldError::not_supported(path, json!(level), &allowed));
    }
    parsed
}

fn validate_stages(stages: &[String], path: &str, errors: &mut Vec<FieldError>) -> StageSet {
    let allowed = Stage::ALL.map(Stage::as_str).join(",");
    let mut set = StageSet::default();
    for (i, s) in stages.iter().enumerate() {
        match Stage::parse(s) {
            Some(stage) => set.insert(stage),
            None => errors.push(FieldError::invalid(
                format!("{path}[{i}]"),
                json!(s),
                format!("allowed stages are {allowed}"),
            )),
        }
    }
    set
}

fn validate_non_resource_urls(urls: &[String], rule: &str, errors: &mut Vec<FieldError>) {
    for (i, url) in urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        let path = format!("{rule}.nonResourceURLs[{i}]");
        if !url.starts_with('/') {
            errors.push(FieldError::invalid(
                &path,
                json!(url),
                "non-resource URL rules must begin with a '/' character",
            ));
        }
        // Any `*` but the last byte (bytes, so a multi-byte last character cannot split).
        if url.bytes().rev().skip(1).any(|b| b == b'*') {
            errors.push(FieldError::invalid(
                &path,
                json!(url),
                "non-resource URL wildcards '*' must be the final character of the rule",
            ));
        }
    }
}

/// Kube names these `rules[i].resources.group` without the entry's index; so do we, so
/// that the message reads the same.
fn validate_resources(resources: &[GroupResources], rule: &str, errors: &mut Vec<FieldError>) {
    for gr in resources {
        if !gr.group.is_empty() && gr.group != "*" {
            let msgs = is_dns1123_subdomain(&gr.group);
            if !msgs.is_empty() {
                errors.push(FieldError::invalid(
                    format!("{rule}.resources.group"),
                    json!(gr.group),
                    msgs.join(","),
                ));
            }
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            errors.push(FieldError::invalid(
                format!("{rule}.resources.resourceNames"),
                json!(gr.resource_names),
                "using resourceNames requires at least one resource",
            ));
        }
    }
}

/// The fields each object of a policy may have, for the strict-decoding warnings.
enum Shape {
    Policy,
    Rule,
    GroupResources,
}

impl Shape {
    fn known(&self) -> &'static [&'static str] {
        match self {
            Shape::Policy => &[
                "apiVersion",
                "kind",
                "metadata",
                "rules",
                "omitStages",
                "omitManagedFields",
            ],
            Shape::Rule => &[
                "level",
                "users",
                "userGroups",
                "verbs",
                "resources",
                "namespaces",
                "nonResourceURLs",
                "omitStages",
                "omitManagedFields",
            ],
            Shape::GroupResources => &["group", "resources", "resourceNames"],
        }
    }
}

/// Kube decodes strictly first and, on unknown fields only, decodes leniently and warns.
/// The warning names each field by its path, as the strict decoder does.
fn unknown_fields(obj: &Map<String, Value>, shape: &Shape, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in obj {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if !shape.known().contains(&key.as_str()) {
            out.push(format!(
                "Audit policy contains errors, falling back to lenient decoding: strict decoding error: unknown field {path:?}"
            ));
            continue;
        }
        let child = match (shape, key.as_str()) {
            (Shape::Policy, "rules") => Shape::Rule,
            (Shape::Rule, "resources") => Shape::GroupResources,
            _ => continue,
        };
        if let Value::Array(items) = value {
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(o) = item {
                    unknown_fields(o, &child, &format!("{path}[{i}]"), out);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
