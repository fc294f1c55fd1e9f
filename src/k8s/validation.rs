//! apimachinery's ObjectMeta validation as kube-apiserver applies it to custom resources.
//!
//! Field paths, check order and messages follow `ValidateObjectMetaAccessor` with
//! `NameIsDNSSubdomain` (what the custom-resource strategy uses) and
//! `ValidateObjectMetaAccessorUpdate`, because users and tools read and match them.
//! Metadata arrives here as raw JSON, so shapes kube's decoder would refuse become
//! field errors instead.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use rand::Rng;
use regex::Regex;
use serde_json::{Map, Value};

use super::status::{go_quote, FieldError, FieldErrorType};

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_KEY_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
/// kube's `TotalAnnotationSizeLimitB`: keys plus values, in bytes.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;
const FIELD_MANAGER_MAX: usize = 128;
const SUBRESOURCE_MAX: usize = 256;

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^{fmt}$")).expect("validation regexes are constants")
}

static DNS1123_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FMT));
static LABEL_KEY_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_KEY_FMT));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));

/// Lengths are counted in bytes, yet the released apimachinery this mirrors says
/// "characters"; only its newest sources say "bytes".
fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// apimachinery's `RegexError`, including its odd `',  or '` spacing.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: String = examples
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{}'{e}', ", if i > 0 { " or " } else { "" }))
        .collect();
    format!("{msg} (e.g. {examples}regex used for validation is '{fmt}')")
}

/// The largest char boundary at or below `i`, so byte cuts never split a character.
fn floor_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&b| s.is_char_boundary(b))
        .unwrap_or(0)
}

pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !DNS1123_LABEL_RE.is_match(s) {
        // The length is already reported, so a valid subdomain can only be failing on dots.
        if DNS1123_SUBDOMAIN_RE.is_match(s) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// A label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match s.split('/').collect::<Vec<_>>()[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            }
            let prefix_errs = if prefix.is_empty() {
                Vec::new()
            } else {
                is_dns1123_subdomain(prefix)
            };
            errs.extend(prefix_errs.into_iter().map(|m| format!("prefix part {m}")));
            name
        }
        _ => {
            let rule = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES);
            let suffix =
                "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
            return vec![format!("a valid label key {rule} {suffix}")];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_KEY_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(LABEL_KEY_NAME_MAX)));
    }
    if !LABEL_KEY_RE.is_match(name) {
        let rule = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES);
        errs.push(format!("name part {rule}"));
    }
    errs
}

pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !LABEL_VALUE_RE.is_match(s) {
        let examples = ["MyValue", "my_value", "12345"];
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &examples));
    }
    errs
}

/// `NameIsDNSSubdomain` for a generateName: random characters will follow, so a trailing
/// dash is fine. kube masks it by replacing the last two bytes with `a`, and so do we.
fn generate_name_errors(prefix: &str) -> Vec<String> {
    if prefix.len() < 2 || !prefix.ends_with('-') {
        return is_dns1123_subdomain(prefix);
    }
    let cut = prefix.len() - 2;
    let boundary = floor_boundary(prefix, cut);
    // Go slices mid-character; '#' keeps the byte length and fails the regex just the same.
    let masked = format!("{}{}a", &prefix[..boundary], "#".repeat(cut - boundary));
    is_dns1123_subdomain(&masked)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Collects field errors and reads raw JSON the way Go decodes it into ObjectMeta:
/// absent and null read as empty, and a value of the wrong type is reported, then skipped.
#[derive(Default)]
struct Errors(Vec<FieldError>);

type Object = Map<String, Value>;

impl Errors {
    fn invalid(&mut self, path: impl Into<String>, value: impl Into<Value>, detail: &str) {
        self.0.push(FieldError::invalid(path, value.into(), detail));
    }

    fn each(&mut self, path: &str, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.invalid(path, value, &m);
        }
    }

    /// kube's decoder would refuse the request outright; we report it in the words kube
    /// uses for a custom resource field of the wrong type.
    fn wrong_type(&mut self, path: &str, v: &Value, expected: &str) {
        let actual = json_type(v);
        let detail = format!(
            "{path} in body must be of type {expected}: {}",
            go_quote(actual)
        );
        let kind = FieldErrorType::TypeInvalid;
        self.0
            .push(FieldError::new(kind, path, Some(actual.into()), detail));
    }

    fn string<'a>(
        &mut self,
        v: Option<&'a Value>,
        path: impl FnOnce() -> String,
    ) -> Option<&'a str> {
        match v {
            None | Some(Value::Null) => Some(""),
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.wrong_type(&path(), other, "string");
                None
            }
        }
    }

    fn field<'a>(&mut self, m: &'a Object, base: &str, key: &str) -> Option<&'a str> {
        self.string(m.get(key), || format!("{base}.{key}"))
    }

    fn integer(&mut self, m: &Object, key: &str) -> Option<i64> {
        let v = m.get(key).filter(|v| !v.is_null())?;
        let n = v.as_i64();
        if n.is_none() {
            self.wrong_type(&format!("metadata.{key}"), v, "integer");
        }
        n
    }

    fn array<'a>(&mut self, m: &'a Object, key: &str) -> &'a [Value] {
        match m.get(key) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => &[],
            Some(other) => {
                self.wrong_type(&format!("metadata.{key}"), other, "array");
                &[]
            }
        }
    }

    /// `labels` or `annotations` as string pairs.
    fn string_map<'a>(&mut self, m: &'a Object, key: &str) -> Vec<(&'a str, &'a str)> {
        match m.get(key) {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str(),
                        self.string(Some(v), || format!("metadata.{key}.{k}"))?,
                    ))
                })
                .collect(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => {
                self.wrong_type(&format!("metadata.{key}"), other, "object");
                Vec::new()
            }
        }
    }

    fn string_list<'a>(&mut self, m: &'a Object, key: &str) -> Vec<&'a str> {
        let items = self.array(m, key).iter().enumerate();
        items
            .filter_map(|(i, v)| self.string(Some(v), || format!("metadata.{key}[{i}]")))
            .collect()
    }
}

/// Validate `metadata` of a custom resource on create. `namespaced` says whether
/// metadata.namespace is required (true) or forbidden (false).
///
/// kube generates the name before validating; a `generateName` with no `name` yet is
/// accepted here so callers may validate either before or after generating.
pub fn validate_object_meta(meta: &Map<String, Value>, namespaced: bool) -> Vec<FieldError> {
    const STRINGS: [&str; 5] = [
        "uid",
        "resourceVersion",
        "selfLink",
        "creationTimestamp",
        "deletionTimestamp",
    ];
    let mut e = Errors::default();
    let generate_name = e.field(meta, "metadata", "generateName");
    if let Some(g) = generate_name.filter(|g| !g.is_empty()) {
        e.each("metadata.generateName", g, generate_name_errors(g));
    }
    match e.field(meta, "metadata", "name") {
        Some("") if generate_name.is_none_or(str::is_empty) => {
            let detail = "name or generateName is required";
            e.0.push(FieldError::required("metadata.name", detail));
        }
        Some("") | None => {}
        Some(name) => e.each("metadata.name", name, is_dns1123_subdomain(name)),
    }
    match e.field(meta, "metadata", "namespace") {
        Some("") if namespaced => e.0.push(FieldError::required("metadata.namespace", "")),
        Some(ns) if namespaced => e.each("metadata.namespace", ns, is_dns1123_label(ns)),
        Some(ns) if !ns.is_empty() => {
            let detail = "not allowed on this type";
            e.0.push(FieldError::forbidden("metadata.namespace", detail));
        }
        _ => {}
    }
    for key in STRINGS {
        e.field(meta, "metadata", key);
    }
    e.integer(meta, "deletionGracePeriodSeconds");
    if let Some(g) = e.integer(meta, "generation").filter(|g| *g < 0) {
        e.invalid(
            "metadata.generation",
            g,
            "must be greater than or equal to 0",
        );
    }
    for (k, v) in e.string_map(meta, "labels") {
        e.each("metadata.labels", k, is_qualified_name(k));
        e.each("metadata.labels", v, is_valid_label_value(v));
    }
    let annotations = e.string_map(meta, "annotations");
    for (k, _) in &annotations {
        // Annotation keys are qualified names in which case does not matter.
        e.each(
            "metadata.annotations",
            k,
            is_qualified_name(&k.to_lowercase()),
        );
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ANNOTATIONS_MAX_BYTES {
        e.0.push(FieldError::too_long(
            "metadata.annotations",
            ANNOTATIONS_MAX_BYTES,
        ));
    }
    validate_owner_references(meta, &mut e);
    // kube reports finalizers without their index.
    let finalizers = e.string_list(meta, "finalizers");
    for f in &finalizers {
        e.each("metadata.finalizers", f, is_qualified_name(f));
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        let detail = "finalizer orphan and foregroundDeletion cannot be both set";
        e.invalid("metadata.finalizers", finalizers, detail);
    }
    validate_managed_fields(meta, &mut e);
    e.0
}

/// kube reports owner reference problems without the index: `metadata.ownerReferences.uid`.
fn validate_owner_references(meta: &Object, e: &mut Errors) {
    const PATH: &str = "metadata.ownerReferences";
    let refs = e.array(meta, "ownerReferences");
    let mut first_controller: Option<String> = None;
    for (i, item) in refs.iter().enumerate() {
        let base = format!("{PATH}[{i}]");
        let Value::Object(r) = item else {
            e.wrong_type(&base, item, "object");
            continue;
        };
        let mut field = |key: &str| e.field(r, &base, key).unwrap_or("");
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let (name, uid) = (field("name"), field("uid"));
        for key in ["controller", "blockOwnerDeletion"] {
            if let Some(v) = r.get(key).filter(|v| !v.is_null() && !v.is_boolean()) {
                e.wrong_type(&format!("{base}.{key}"), v, "boolean");
            }
        }
        let (group, version) = parse_group_version(api_version);
        if version.is_empty() {
            e.invalid(
                format!("{PATH}.apiVersion"),
                api_version,
                "version must not be empty",
            );
        }
        for (key, value) in [("kind", kind), ("name", name), ("uid", uid)] {
            if value.is_empty() {
                e.invalid(format!("{PATH}.{key}"), value, "must not be empty");
            }
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            // kube prints the Go struct here; the JSON object is the closest faithful form.
            let detail = "/v1, Kind=Event is disallowed from being an owner";
            e.invalid(PATH, item.clone(), detail);
        }
        if r.get("controller") == Some(&Value::Bool(true)) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => {
                    let detail = format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}");
                    e.invalid(PATH, refs.to_vec(), &detail);
                }
                None => first_controller = Some(current),
            }
        }
    }
}

/// `schema.ParseGroupVersion` as `FromAPIVersionAndKind` uses it: unparseable means empty.
fn parse_group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        None => ("", api_version),
        Some((group, version)) if !version.contains('/') && api_version != "/" => (group, version),
        Some(_) => ("", ""),
    }
}

fn validate_managed_fields(meta: &Object, e: &mut Errors) {
    for (i, item) in e.array(meta, "managedFields").iter().enumerate() {
        let path = format!("metadata.managedFields[{i}]");
        let Value::Object(entry) = item else {
            e.wrong_type(&path, item, "object");
            continue;
        };
        let mut field = |key: &str| e.field(entry, &path, key);
        let (operation, fields_type) = (field("operation"), field("fieldsType"));
        let (manager, subresource) = (field("manager"), field("subresource"));
        field("apiVersion");
        field("time");
        if let Some(op) = operation.filter(|op| !matches!(*op, "Apply" | "Update")) {
            e.invalid(
                format!("{path}.operation"),
                op,
                "must be `Apply` or `Update`",
            );
        }
        if let Some(t) = fields_type.filter(|t| !t.is_empty() && *t != "FieldsV1") {
            e.invalid(format!("{path}.fieldsType"), t, "must be `FieldsV1`");
        }
        let manager = manager.unwrap_or("");
        if manager.len() > FIELD_MANAGER_MAX {
            e.0.push(FieldError::too_long(
                format!("{path}.manager"),
                FIELD_MANAGER_MAX,
            ));
        }
        for (at, c) in manager.char_indices().filter(|(_, c)| !is_go_printable(*c)) {
            let detail = format!("invalid character U+{:04X} (at position {at})", c as u32);
            e.invalid(format!("{path}.manager"), manager, &detail);
        }
        if subresource.is_some_and(|s| s.len() > SUBRESOURCE_MAX) {
            e.0.push(FieldError::too_long(
                format!("{path}.subresource"),
                SUBRESOURCE_MAX,
            ));
        }
    }
}

/// Go's `unicode.IsPrint` without the Unicode tables: controls, non-ASCII spaces, the
/// common format characters and private use are not printable.
fn is_go_printable(c: char) -> bool {
    let format = matches!(c, '\u{AD}' | '\u{600}'..='\u{605}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}');
    let private = matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..);
    c == ' ' || !(c.is_control() || c.is_whitespace() || format || private)
}

/// Extra checks on update, as kube's `ValidateObjectMetaAccessorUpdate`: finalizers
/// frozen once deleting, generation monotonic, identity and lifecycle fields immutable.
/// `generateName` may change, as in kube.
///
/// Labels, annotations, owner references and managed fields are left to
/// [`validate_object_meta`], which callers run on the new metadata as well, so each
/// problem is reported once. A missing resourceVersion is the caller's to reject: kube's
/// store refuses it before metadata validation runs.
pub fn validate_object_meta_update(
    new: &Map<String, Value>,
    old: &Map<String, Value>,
) -> Vec<FieldError> {
    const IMMUTABLE: [&str; 6] = [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ];
    let mut e = Errors::default();
    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        // Shape problems were reported when each version was validated.
        let mut shapes = Errors::default();
        let before: BTreeSet<&str> = shapes.string_list(old, "finalizers").into_iter().collect();
        let now = shapes.string_list(new, "finalizers");
        let added: BTreeSet<&str> = now.into_iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            // Go's %#v of a []string.
            let list: Vec<String> = added.iter().map(|f| go_quote(f)).collect();
            let detail = format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                list.join(", ")
            );
            e.0.push(FieldError::forbidden("metadata.finalizers", detail));
        }
    }
    let generation = |m: &Object| m.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if generation(new) < generation(old) {
        e.invalid(
            "metadata.generation",
            generation(new),
            "must not be decremented",
        );
    }
    for key in IMMUTABLE {
        // Go compares decoded values: a missing string is "", a missing pointer is nil.
        let decoded = |m: &Object| match m.get(key) {
            None | Some(Value::Null) if matches!(key, "name" | "namespace" | "uid") => "".into(),
            None => Value::Null,
            Some(v) => v.clone(),
        };
        let (now, before) = (decoded(new), decoded(old));
        if now != before {
            e.invalid(format!("metadata.{key}"), now, "field is immutable");
        }
    }
    e.0
}

/// kube's SimpleNameGenerator: prefix (truncated so the result fits 63 chars) + 5 random
/// chars from "bcdfghjklmnpqrstvwxz2456789".
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    const RANDOM_LEN: usize = 5;
    // kube cuts at 58 bytes; backing off to a character boundary only matters for prefixes
    // that fail validation anyway.
    let mut name = prefix[..floor_boundary(prefix, 63 - RANDOM_LEN)].to_string();
    let mut rng = rand::rng();
    name.extend((0..RANDOM_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char));
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Checks `scope {metadata} => messages` lines, where scope is `namespaced` or `cluster`,
    /// messages are joined by ` && ` (or `ok` for none) and the long rule texts are
    /// abbreviated as SUBDOMAIN_RULE, LABEL_RULE, NAME_PART_RULE and VALUE_RULE.
    fn cases(text: &str) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (scope, rest) = line.split_once(' ').expect("scope");
            let (meta, want) = rest.split_once(" => ").expect("meta => messages");
            let meta: Value = serde_json::from_str(meta).expect(meta);
            let errs = validate_object_meta(meta.as_object().unwrap(), scope == "namespaced");
            let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
            let want = if want == "ok" { vec![] } else { expand(want) };
            assert_eq!(got, want, "{line}");
        }
    }

    fn expand(want: &str) -> Vec<String> {
        let rules = [
            ("SUBDOMAIN_RULE", is_dns1123_subdomain("-")),
            ("LABEL_RULE", is_dns1123_label("-")),
            ("NAME_PART_RULE", is_qualified_name("-")),
            ("VALUE_RULE", is_valid_label_value("-")),
        ];
        let expand_one = |m: &str| {
            rules
                .iter()
                .fold(m.to_string(), |m, (k, v)| m.replace(k, &v[0]))
        };
        want.split(" && ").map(expand_one).collect()
    }

    /// Checks `{patch} => messages` lines: `old` with the patch applied, against `old`.
    fn updates(old: &Value, text: &str) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (patch, want) = line.split_once(" => ").expect("patch => messages");
            let old = old.as_object().unwrap();
            let mut new = old.clone();
            new.extend(serde_json::from_str::<Object>(patch).expect(patch));
            let got: Vec<String> = validate_object_meta_update(&new, old)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(
                got,
                if want == "ok" { vec![] } else { vec![want] },
                "{line}"
            );
        }
    }

    #[test]
    fn rule_texts_are_kubes_word_for_word() {
        let texts = [
            is_dns1123_subdomain("Foo"),
            is_dns1123_label("-a"),
            is_qualified_name("-x"),
            is_valid_label_value("-v"),
            is_qualified_name("a/b/c"),
        ];
        let want = [
            r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ];
        for (got, want) in texts.iter().zip(want) {
            assert_eq!(got, &[want]);
        }
    }

    #[test]
    fn format_checks_accept_valid_input_and_report_each_problem() {
        assert!(is_dns1123_subdomain("a.b-c.d1").is_empty() && is_dns1123_label("ns-1").is_empty());
        assert!(is_qualified_name("example.com/My_Name.1").is_empty());
        assert!(is_valid_label_value("").is_empty() && is_valid_label_value("A_b.1").is_empty());
        let long = |n: usize| "a".repeat(n);
        let check = |got: Vec<String>, want: &str| assert_eq!(got, expand(want));
        check(
            is_dns1123_subdomain(&long(254)),
            "must be no more than 253 characters",
        );
        check(
            is_dns1123_label(&long(64)),
            "must be no more than 63 characters",
        );
        check(is_dns1123_label("a.b"), "must not contain dots");
        check(is_qualified_name("/x"), "prefix part must be non-empty");
        check(
            is_qualified_name("a/"),
            "name part must be non-empty && NAME_PART_RULE",
        );
        check(is_qualified_name("A/x"), "prefix part SUBDOMAIN_RULE");
        check(
            is_qualified_name(&long(64)),
            "name part must be no more than 63 characters",
        );
        check(
            is_valid_label_value(&long(64)),
            "must be no more than 63 characters",
        );
    }

    #[test]
    fn name_is_required_unless_generate_name_is_set() {
        cases(
            r#"namespaced {"name": "web", "namespace": "prod"} => ok
            cluster {} => metadata.name: Required value: name or generateName is required
            cluster {"name": "", "generateName": ""} => metadata.name: Required value: name or generateName is required
            cluster {"generateName": "web-"} => ok"#,
        );
    }

    #[test]
    fn uppercase_name_is_invalid_with_kube_message() {
        cases(r#"cluster {"name": "Web"} => metadata.name: Invalid value: "Web": SUBDOMAIN_RULE"#);
    }

    #[test]
    fn path_segment_names_fail_the_subdomain_rule() {
        cases(
            r#"cluster {"name": "."} => metadata.name: Invalid value: ".": SUBDOMAIN_RULE
            cluster {"name": ".."} => metadata.name: Invalid value: "..": SUBDOMAIN_RULE
            cluster {"name": "a/b"} => metadata.name: Invalid value: "a/b": SUBDOMAIN_RULE
            cluster {"name": "a%b"} => metadata.name: Invalid value: "a%b": SUBDOMAIN_RULE"#,
        );
    }

    #[test]
    fn overlong_name_reports_only_its_length() {
        let name = "a".repeat(254);
        let want =
            format!("metadata.name: Invalid value: {name:?}: must be no more than 253 characters");
        cases(&format!(r#"cluster {{"name": "{name}"}} => {want}"#));
    }

    #[test]
    fn generate_name_may_end_with_a_dash_but_must_otherwise_be_a_subdomain() {
        cases(
            r#"cluster {"name": "web-x2b4f", "generateName": "web-"} => ok
            cluster {"generateName": "a-"} => ok
            cluster {"name": "a", "generateName": "Web-"} => metadata.generateName: Invalid value: "Web-": SUBDOMAIN_RULE
            cluster {"name": "a", "generateName": "é-"} => metadata.generateName: Invalid value: "é-": SUBDOMAIN_RULE
            cluster {"name": "a", "generateName": "-"} => metadata.generateName: Invalid value: "-": SUBDOMAIN_RULE"#,
        );
    }

    #[test]
    fn namespace_is_required_or_forbidden_by_scope_and_must_be_a_dns_label() {
        cases(
            r#"namespaced {"name": "a"} => metadata.namespace: Required value
            cluster {"name": "a", "namespace": "ns"} => metadata.namespace: Forbidden: not allowed on this type
            cluster {"name": "a", "namespace": ""} => ok
            namespaced {"name": "a", "namespace": "a.b"} => metadata.namespace: Invalid value: "a.b": must not contain dots
            namespaced {"name": "a", "namespace": "NS"} => metadata.namespace: Invalid value: "NS": LABEL_RULE"#,
        );
    }

    #[test]
    fn negative_generation_is_invalid() {
        cases(
            r#"cluster {"name": "a", "generation": -1} => metadata.generation: Invalid value: -1: must be greater than or equal to 0"#,
        );
    }

    #[test]
    fn label_keys_and_values_are_reported_at_metadata_labels() {
        cases(
            r#"cluster {"name": "a", "labels": {"example.com/app": "web", "empty": "", "null": null}} => ok
            cluster {"name": "a", "labels": {"-k": "ok", "k": "-v"}} => metadata.labels: Invalid value: "-k": NAME_PART_RULE && metadata.labels: Invalid value: "-v": VALUE_RULE"#,
        );
    }

    #[test]
    fn annotation_keys_are_qualified_names_in_any_case() {
        cases(
            r#"cluster {"name": "a", "annotations": {"Example.COM/Key": "any value: at all"}} => ok
            cluster {"name": "a", "annotations": {"-K": "v"}} => metadata.annotations: Invalid value: "-K": NAME_PART_RULE"#,
        );
    }

    #[test]
    fn annotations_over_256_kib_are_too_long() {
        let at_limit = "v".repeat(256 * 1024 - 1);
        cases(&format!(
            r#"cluster {{"name": "a", "annotations": {{"k": "{at_limit}"}}}} => ok"#
        ));
        let too_long = "metadata.annotations: Too long: must have at most 262144 bytes";
        cases(&format!(
            r#"cluster {{"annotations": {{"k": "{at_limit}v"}}, "name": "a"}} => {too_long}"#
        ));
    }

    #[test]
    fn finalizers_must_be_qualified_names_reported_without_index() {
        cases(
            r#"cluster {"name": "a", "finalizers": ["example.com/cleanup", "kubernetes"]} => ok
            cluster {"name": "a", "finalizers": ["ok", "bad one"]} => metadata.finalizers: Invalid value: "bad one": NAME_PART_RULE
            cluster {"name": "a", "finalizers": [null]} => metadata.finalizers: Invalid value: "": name part must be non-empty && metadata.finalizers: Invalid value: "": NAME_PART_RULE"#,
        );
    }

    #[test]
    fn orphan_and_foreground_finalizers_conflict() {
        cases(
            r#"cluster {"name": "a", "finalizers": ["orphan", "foregroundDeletion"]} => metadata.finalizers: Invalid value: ["orphan","foregroundDeletion"]: finalizer orphan and foregroundDeletion cannot be both set"#,
        );
    }

    #[test]
    fn owner_reference_requires_api_version_kind_name_and_uid() {
        cases(
            r#"cluster {"name": "a", "ownerReferences": [{"apiVersion": "x.io/v1", "kind": "K", "name": "n", "uid": "u"}]} => ok
            cluster {"name": "a", "ownerReferences": [{}]} => metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty && metadata.ownerReferences.kind: Invalid value: "": must not be empty && metadata.ownerReferences.name: Invalid value: "": must not be empty && metadata.ownerReferences.uid: Invalid value: "": must not be empty
            cluster {"name": "a", "ownerReferences": [{"apiVersion": "g/", "kind": "K", "name": "n", "uid": "u"}]} => metadata.ownerReferences.apiVersion: Invalid value: "g/": version must not be empty
            cluster {"name": "a", "ownerReferences": [{"apiVersion": "a/b/c", "kind": "K", "name": "n", "uid": "u"}]} => metadata.ownerReferences.apiVersion: Invalid value: "a/b/c": version must not be empty
            cluster {"name": "a", "ownerReferences": [{"apiVersion": "/", "kind": "K", "name": "n", "uid": "u"}]} => metadata.ownerReferences.apiVersion: Invalid value: "/": version must not be empty"#,
        );
    }

    #[test]
    fn events_cannot_own_objects() {
        let r = json!({"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"});
        let want = "/v1, Kind=Event is disallowed from being an owner";
        cases(&format!(
            r#"cluster {{"name": "a", "ownerReferences": [{r}]}} => metadata.ownerReferences: Invalid value: {r}: {want}"#
        ));
    }

    #[test]
    fn only_one_owner_reference_may_be_controller() {
        let r = |n: &str| json!({"apiVersion": "v1", "kind": "Pod", "name": n, "uid": n, "controller": true});
        let refs = json!([r("p1"), r("p2")]);
        let want = "Only one reference can have Controller set to true. Found \"true\" in references for Pod/p1 and Pod/p2";
        cases(&format!(
            r#"cluster {{"name": "a", "ownerReferences": {refs}}} => metadata.ownerReferences: Invalid value: {refs}: {want}"#
        ));
    }

    #[test]
    fn managed_fields_entries_are_checked_like_kube() {
        let long = "m".repeat(129);
        cases(&format!(
            r#"cluster {{"name": "a", "managedFields": [{{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {{}}}}]}} => ok
            cluster {{"name": "a", "managedFields": [{{"operation": "Patch", "fieldsType": "FieldsV2"}}]}} => metadata.managedFields[0].operation: Invalid value: "Patch": must be `Apply` or `Update` && metadata.managedFields[0].fieldsType: Invalid value: "FieldsV2": must be `FieldsV1`
            cluster {{"name": "a", "managedFields": [{{"manager": "bad\u0007", "operation": "Apply"}}]}} => metadata.managedFields[0].manager: Invalid value: "bad\x07": invalid character U+0007 (at position 3)
            cluster {{"name": "a", "managedFields": [{{"manager": "{long}", "operation": "Apply"}}]}} => metadata.managedFields[0].manager: Too long: must have at most 128 bytes
            cluster {{"name": "a", "managedFields": [{{"subresource": "{long}{long}", "operation": "Apply"}}]}} => metadata.managedFields[0].subresource: Too long: must have at most 256 bytes"#
        ));
    }

    #[test]
    fn wrong_json_types_become_field_errors_not_panics() {
        cases(
            r#"cluster {"name": "a", "labels": {"n": 5}} => metadata.labels.n: Invalid value: "integer": metadata.labels.n in body must be of type string: "integer"
            cluster {"name": "a", "labels": ["x"]} => metadata.labels: Invalid value: "array": metadata.labels in body must be of type object: "array"
            cluster {"name": 7} => metadata.name: Invalid value: "integer": metadata.name in body must be of type string: "integer"
            cluster {"name": "a", "generation": 1.5} => metadata.generation: Invalid value: "number": metadata.generation in body must be of type integer: "number"
            cluster {"name": "a", "ownerReferences": [true]} => metadata.ownerReferences[0]: Invalid value: "boolean": metadata.ownerReferences[0] in body must be of type object: "boolean""#,
        );
        let shapes = [
            json!({"namespace": {}, "generateName": [], "uid": 1, "deletionGracePeriodSeconds": "1"}),
            json!({"annotations": "x", "finalizers": "x", "ownerReferences": {}, "managedFields": 3}),
            json!({"finalizers": [1], "ownerReferences": [{"uid": 2, "controller": "y"}]}),
            json!({"ownerReferences": [{"blockOwnerDeletion": 1}], "managedFields": ["x", {"time": 1}]}),
        ];
        for meta in shapes {
            let errs = validate_object_meta(meta.as_object().unwrap(), true);
            let typed = errs.iter().any(|e| e.kind == FieldErrorType::TypeInvalid);
            assert!(typed, "{meta}");
        }
    }

    #[test]
    fn update_rejects_changes_to_identity_and_lifecycle_fields() {
        let old = json!({"name": "a", "namespace": "ns", "uid": "u", "creationTimestamp": "t", "generation": 3});
        updates(
            &old,
            r#"{"generateName": "x-", "generation": 4, "labels": {"x": "y"}} => ok
            {"name": "b"} => metadata.name: Invalid value: "b": field is immutable
            {"namespace": null} => metadata.namespace: Invalid value: "": field is immutable
            {"uid": "v"} => metadata.uid: Invalid value: "v": field is immutable
            {"creationTimestamp": "x"} => metadata.creationTimestamp: Invalid value: "x": field is immutable
            {"deletionTimestamp": "x"} => metadata.deletionTimestamp: Invalid value: "x": field is immutable
            {"deletionGracePeriodSeconds": 30} => metadata.deletionGracePeriodSeconds: Invalid value: 30: field is immutable
            {"generation": 2} => metadata.generation: Invalid value: 2: must not be decremented"#,
        );
    }

    #[test]
    fn no_new_finalizers_once_deletion_started() {
        let old = json!({"name": "a", "deletionTimestamp": "t", "finalizers": ["a"]});
        updates(
            &old,
            r#"{"finalizers": ["c", "a", "b"]} => metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"b", "c"}
            {"finalizers": []} => ok"#,
        );
    }

    #[test]
    fn generated_names_use_kube_alphabet_and_fit_63_characters() {
        let name = generate_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
        assert!(name[4..].bytes().all(|b| alphabet.contains(&b)));
        let long = generate_name(&"p".repeat(100));
        assert_eq!((long.len(), &long[..58]), (63, "p".repeat(58).as_str()));
        assert_eq!(generate_name("").len(), 5);
        assert!(generate_name(&"é".repeat(40)).len() <= 63);
        let distinct: BTreeSet<String> = (0..20).map(|_| generate_name("x-")).collect();
        assert!(distinct.len() > 1);
    }
}
