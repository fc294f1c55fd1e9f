//! `/openapi/v2` in protobuf: the Swagger 2.0 document as gnostic's `openapi.v2.Document`
//! message (google/gnostic-models, `openapiv2/OpenAPIv2.proto`). kube-apiserver serves this
//! form for `Accept: application/com.github.proto-openapi.spec.v2[@.]v1.0+protobuf`, and
//! kubectl's client-side validation asks for no other.
//!
//! kube-apiserver makes it by reading its JSON with gnostic's compiler and marshalling the
//! result. This module maps the same JSON onto the same messages directly, as that compiler
//! maps it:
//! - an object's keys become the message's fields, written in field-number order with
//!   proto3's defaults (empty, zero, false) left out, as every protobuf encoder writes them;
//!   `x-` keys become `NamedAny` vendor extensions in document order, whose `Any.yaml` is the
//!   value as YAML text (kube-openapi's reader parses that text back);
//! - maps of names (`definitions`, `properties`, `paths`, response codes, ...) become repeated
//!   `Named*` pairs, in document order;
//! - the oneofs are decided as gnostic decides them: `type` (`TypeItem`) is a string or a
//!   list of them, `items` (`ItemsItem`) one schema, `additionalProperties` a schema or a
//!   boolean; a parameter is a `BodyParameter` when `in` is `body`, else the sub-schema its
//!   `in` names; a parameter or response with `$ref` is a `JsonReference`; a response schema
//!   of `type: file` is a `FileSchema`.
//!
//! gnostic refuses a whole document when a key has no field or a value the wrong type. This
//! encoder leaves such a key out and reports it, so the server can log it and still serve the
//! rest; the documents the server publishes have none (a test checks). Security definitions
//! and requirements are never published, so they have no tables here.

use std::collections::BTreeSet;

use serde_json::Value;

#[path = "openapi_yaml.rs"]
mod yaml;

use yaml::yaml;

/// The encoded document and the keys it had to leave out (`Message.key`).
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub skipped: Vec<String>,
}

/// Encodes a Swagger 2.0 document as an `openapi.v2.Document`.
pub fn encode_document(doc: &Value) -> Encoded {
    let mut report = Report::default();
    let mut w = Writer::default();
    if !encode(&mut w, &DOCUMENT, doc, &mut report) {
        report.skip("Document", "(not an object)");
    }
    Encoded {
        bytes: w.0,
        skipped: report.0.into_iter().collect(),
    }
}

#[derive(Default)]
struct Report(BTreeSet<String>);

impl Report {
    fn skip(&mut self, message: &str, key: &str) {
        self.0.insert(format!("{message}.{key}"));
    }
}

// ---------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// Protobuf's wire format, just what these messages need: varints, 64-bit doubles and
/// length-delimited fields.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from((field << 3) | wire));
    }

    fn string(&mut self, field: u32, s: &str) {
        self.tag(field, LEN);
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn bool(&mut self, field: u32, b: bool) {
        self.tag(field, VARINT);
        self.varint(u64::from(b));
    }

    /// int64 is a varint of the two's complement: ten bytes when negative.
    fn int64(&mut self, field: u32, v: i64) {
        self.tag(field, VARINT);
        self.varint(v as u64);
    }

    fn double(&mut self, field: u32, v: f64) {
        self.tag(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// A nested message, written only when `body` says it encoded one: a message that is
    /// present but empty is still written, as for `properties: {}`.
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer) -> bool) {
        let mut inner = Writer::default();
        if body(&mut inner) {
            self.tag(field, LEN);
            self.varint(inner.0.len() as u64);
            self.0.extend_from_slice(&inner.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// How one JSON key becomes one field.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Double,
    Int64,
    /// `repeated string`.
    Strings,
    Msg(&'static Message),
    /// A JSON array of messages: `repeated M`.
    Msgs(&'static Message),
    /// A JSON object: a wrapper message of `repeated Named{name = 1, value = 2}` pairs.
    Named(&'static Message),
}

struct Field {
    key: &'static str,
    number: u32,
    kind: Kind,
}

const fn f(key: &'static str, number: u32, kind: Kind) -> Field {
    Field { key, number, kind }
}

enum Message {
    /// Keys to fields, in field-number order, and the field of `x-` vendor extensions, whose
    /// number is the highest in every message that has one.
    Fields {
        name: &'static str,
        fields: &'static [Field],
        extensions: Option<u32>,
    },
    /// A message whose fields depend on the value (gnostic's oneofs and pattern-keyed maps).
    /// Returns false when the value cannot be this message.
    Custom(&'static str, fn(&mut Writer, &Value, &mut Report) -> bool),
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Fields { name, .. } | Message::Custom(name, _) => name,
        }
    }
}

/// Encodes `v` as message `m` into `w`; false when `v` cannot be one.
fn encode(w: &mut Writer, m: &Message, v: &Value, r: &mut Report) -> bool {
    let (name, fields, extensions) = match m {
        Message::Custom(_, encode) => return encode(w, v, r),
        Message::Fields {
            name,
            fields,
            extensions,
        } => (*name, *fields, *extensions),
    };
    let Some(obj) = v.as_object() else {
        return false;
    };
    for f in fields {
        if let Some(x) = obj.get(f.key) {
            field(w, f, x, name, r);
        }
    }
    for (k, x) in obj {
        match extensions {
            Some(number) if k.starts_with("x-") => named(w, number, k, x, &ANY, r),
            _ if !fields.iter().any(|f| f.key == k) => r.skip(name, k),
            _ => {}
        }
    }
    true
}

/// One `Named*` pair (`name = 1`, `value = 2`) as field `number` of the enclosing message.
fn named(w: &mut Writer, number: u32, name: &str, v: &Value, m: &Message, r: &mut Report) {
    w.message(number, |w| {
        if !name.is_empty() {
            w.string(1, name);
        }
        w.message(2, |w| {
            let ok = encode(w, m, v, r);
            if !ok {
                r.skip(m.name(), name);
            }
            ok
        });
        true
    });
}

/// A scalar as gnostic reads a string field: strings, integers by their text, null as empty.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if !n.is_f64() => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn field(w: &mut Writer, f: &Field, v: &Value, message: &str, r: &mut Report) {
    let n = f.number;
    let ok = match f.kind {
        Kind::Str => text(v).map(|s| {
            if !s.is_empty() {
                w.string(n, &s)
            }
        }),
        Kind::Bool => v.as_bool().map(|b| {
            if b {
                w.bool(n, b)
            }
        }),
        Kind::Double => v.as_f64().map(|d| {
            // proto3 leaves out +0.0 only; -0.0 has other bits and is written.
            if d.to_bits() != 0 {
                w.double(n, d)
            }
        }),
        Kind::Int64 => v.as_i64().map(|i| {
            if i != 0 {
                w.int64(n, i)
            }
        }),
        Kind::Strings => v.as_array().and_then(|a| {
            let texts: Option<Vec<String>> = a.iter().map(text).collect();
            texts.map(|t| t.iter().for_each(|s| w.string(n, s)))
        }),
        Kind::Msg(m) => {
            let mut ok = true;
            w.message(n, |w| {
                ok = encode(w, m, v, r);
                ok
            });
            ok.then_some(())
        }
        Kind::Msgs(m) => v.as_array().map(|a| {
            for x in a {
                w.message(n, |w| {
                    let ok = encode(w, m, x, r);
                    if !ok {
                        r.skip(message, f.key);
                    }
                    ok
                });
            }
        }),
        Kind::Named(m) => v.as_object().map(|obj| {
            w.message(n, |w| {
                for (k, x) in obj {
                    named(w, 1, k, x, m, r);
                }
                true
            });
        }),
    };
    if ok.is_none() {
        r.skip(message, f.key);
    }
}

use Kind::{Bool, Double, Int64, Msg, Msgs, Named, Str, Strings};

static DOCUMENT: Message = Message::Fields {
    name: "Document",
    fields: &[
        f("swagger", 1, Str),
        f("info", 2, Msg(&INFO)),
        f("host", 3, Str),
        f("basePath", 4, Str),
        f("schemes", 5, Strings),
        f("consumes", 6, Strings),
        f("produces", 7, Strings),
        f("paths", 8, Msg(&PATHS)),
        f("definitions", 9, Named(&SCHEMA)),
        f("parameters", 10, Named(&PARAMETER)),
        f("responses", 11, Named(&RESPONSE)),
        f("tags", 14, Msgs(&TAG)),
        f("externalDocs", 15, Msg(&EXTERNAL_DOCS)),
    ],
    extensions: Some(16),
};

static INFO: Message = Message::Fields {
    name: "Info",
    fields: &[
        f("title", 1, Str),
        f("version", 2, Str),
        f("description", 3, Str),
        f("termsOfService", 4, Str),
        f("contact", 5, Msg(&CONTACT)),
        f("license", 6, Msg(&LICENSE)),
    ],
    extensions: Some(7),
};

static CONTACT: Message = Message::Fields {
    name: "Contact",
    fields: &[f("name", 1, Str), f("url", 2, Str), f("email", 3, Str)],
    extensions: Some(4),
};

static LICENSE: Message = Message::Fields {
    name: "License",
    fields: &[f("name", 1, Str), f("url", 2, Str)],
    extensions: Some(3),
};

static EXTERNAL_DOCS: Message = Message::Fields {
    name: "ExternalDocs",
    fields: &[f("description", 1, Str), f("url", 2, Str)],
    extensions: Some(3),
};

static TAG: Message = Message::Fields {
    name: "Tag",
    fields: &[
        f("name", 1, Str),
        f("description", 2, Str),
        f("externalDocs", 3, Msg(&EXTERNAL_DOCS)),
    ],
    extensions: Some(4),
};

static JSON_REFERENCE: Message = Message::Fields {
    name: "JsonReference",
    fields: &[f("$ref", 1, Str), f("description", 2, Str)],
    extensions: None,
};

/// `Any`: the value as YAML text in field 2 (`value`, a `google.protobuf.Any`, stays empty).
static ANY: Message = Message::Custom("Any", |w, v, _| {
    w.string(2, &yaml(v));
    true
});

/// `Paths`: `x-` keys are vendor extensions (field 1), keys starting with `/` path items
/// (field 2); all of field 1 is written first, as field-number order asks.
static PATHS: Message = Message::Custom("Paths", |w, v, r| {
    let Some(obj) = v.as_object() else {
        return false;
    };
    for (k, x) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        named(w, 1, k, x, &ANY, r);
    }
    for (k, x) in obj {
        if k.starts_with('/') {
            named(w, 2, k, x, &PATH_ITEM, r);
        } else if !k.starts_with("x-") {
            r.skip("Paths", k);
        }
    }
    true
});

static PATH_ITEM: Message = Message::Fields {
    name: "PathItem",
    fields: &[
        f("$ref", 1, Str),
        f("get", 2, Msg(&OPERATION)),
        f("put", 3, Msg(&OPERATION)),
        f("post", 4, Msg(&OPERATION)),
        f("delete", 5, Msg(&OPERATION)),
        f("options", 6, Msg(&OPERATION)),
        f("head", 7, Msg(&OPERATION)),
        f("patch", 8, Msg(&OPERATION)),
        f("parameters", 9, Msgs(&PARAMETERS_ITEM)),
    ],
    extensions: Some(10),
};

static OPERATION: Message = Message::Fields {
    name: "Operation",
    fields: &[
        f("tags", 1, Strings),
        f("summary", 2, Str),
        f("description", 3, Str),
        f("externalDocs", 4, Msg(&EXTERNAL_DOCS)),
        f("operationId", 5, Str),
        f("produces", 6, Strings),
        f("consumes", 7, Strings),
        f("parameters", 8, Msgs(&PARAMETERS_ITEM)),
        f("responses", 9, Msg(&RESPONSES)),
        f("schemes", 10, Strings),
        f("deprecated", 11, Bool),
    ],
    extensions: Some(13),
};

/// Field 1 or 2 of a oneof holding a reference or the thing itself: gnostic tries both, and
/// only an object with `$ref` is a valid `JsonReference`.
fn reference_or(w: &mut Writer, v: &Value, r: &mut Report, thing: &'static Message) -> bool {
    if !v.is_object() {
        return false;
    }
    if v.get("$ref").is_some() {
        w.message(2, |w| encode(w, &JSON_REFERENCE, v, r));
    } else {
        w.message(1, |w| encode(w, thing, v, r));
    }
    true
}

static PARAMETERS_ITEM: Message = Message::Custom("ParametersItem", |w, v, r| {
    reference_or(w, v, r, &PARAMETER)
});

static PARAMETER: Message = Message::Custom("Parameter", |w, v, r| {
    if !v.is_object() {
        return false;
    }
    if v.get("in").and_then(Value::as_str) == Some("body") {
        w.message(1, |w| encode(w, &BODY_PARAMETER, v, r));
    } else {
        w.message(2, |w| encode(w, &NON_BODY_PARAMETER, v, r));
    }
    true
});

static BODY_PARAMETER: Message = Message::Fields {
    name: "BodyParameter",
    fields: &[
        f("description", 1, Str),
        f("name", 2, Str),
        f("in", 3, Str),
        f("required", 4, Bool),
        f("schema", 5, Msg(&SCHEMA)),
    ],
    extensions: Some(6),
};

/// `NonBodyParameter`: the sub-schema that `in` names.
static NON_BODY_PARAMETER: Message = Message::Custom("NonBodyParameter", |w, v, r| {
    let (number, sub) = match v.get("in").and_then(Value::as_str) {
        Some("header") => (1, &HEADER_PARAMETER),
        Some("formData") => (2, &FORM_DATA_PARAMETER),
        Some("query") => (3, &QUERY_PARAMETER),
        Some("path") => (4, &PATH_PARAMETER),
        _ => return false,
    };
    w.message(number, |w| encode(w, sub, v, r));
    true
});

/// The fields of `HeaderParameterSubSchema` and `PathParameterSubSchema`, which number them
/// alike.
static HEADER_OR_PATH_FIELDS: [Field; 21] = [
    f("required", 1, Bool),
    f("in", 2, Str),
    f("description", 3, Str),
    f("name", 4, Str),
    f("type", 5, Str),
    f("format", 6, Str),
    f("items", 7, Msg(&PRIMITIVES_ITEMS)),
    f("collectionFormat", 8, Str),
    f("default", 9, Msg(&ANY)),
    f("maximum", 10, Double),
    f("exclusiveMaximum", 11, Bool),
    f("minimum", 12, Double),
    f("exclusiveMinimum", 13, Bool),
    f("maxLength", 14, Int64),
    f("minLength", 15, Int64),
    f("pattern", 16, Str),
    f("maxItems", 17, Int64),
    f("minItems", 18, Int64),
    f("uniqueItems", 19, Bool),
    f("enum", 20, Msgs(&ANY)),
    f("multipleOf", 21, Double),
];

/// The fields of `QueryParameterSubSchema` and `FormDataParameterSubSchema`: the same, with
/// `allowEmptyValue` as field 5.
static QUERY_OR_FORM_FIELDS: [Field; 22] = [
    f("required", 1, Bool),
    f("in", 2, Str),
    f("description", 3, Str),
    f("name", 4, Str),
    f("allowEmptyValue", 5, Bool),
    f("type", 6, Str),
    f("format", 7, Str),
    f("items", 8, Msg(&PRIMITIVES_ITEMS)),
    f("collectionFormat", 9, Str),
    f("default", 10, Msg(&ANY)),
    f("maximum", 11, Double),
    f("exclusiveMaximum", 12, Bool),
    f("minimum", 13, Double),
    f("exclusiveMinimum", 14, Bool),
    f("maxLength", 15, Int64),
    f("minLength", 16, Int64),
    f("pattern", 17, Str),
    f("maxItems", 18, Int64),
    f("minItems", 19, Int64),
    f("uniqueItems", 20, Bool),
    f("enum", 21, Msgs(&ANY)),
    f("multipleOf", 22, Double),
];

static HEADER_PARAMETER: Message = Message::Fields {
    name: "HeaderParameterSubSchema",
    fields: &HEADER_OR_PATH_FIELDS,
    extensions: Some(22),
};

static PATH_PARAMETER: Message = Message::Fields {
    name: "PathParameterSubSchema",
    fields: &HEADER_OR_PATH_FIELDS,
    extensions: Some(22),
};

static QUERY_PARAMETER: Message = Message::Fields {
    name: "QueryParameterSubSchema",
    fields: &QUERY_OR_FORM_FIELDS,
    extensions: Some(23),
};

static FORM_DATA_PARAMETER: Message = Message::Fields {
    name: "FormDataParameterSubSchema",
    fields: &QUERY_OR_FORM_FIELDS,
    extensions: Some(23),
};

/// The fields of `Header`; `PrimitivesItems` has the same but `description` (field 18).
static HEADER_FIELDS: [Field; 18] = [
    f("type", 1, Str),
    f("format", 2, Str),
    f("items", 3, Msg(&PRIMITIVES_ITEMS)),
    f("collectionFormat", 4, Str),
    f("default", 5, Msg(&ANY)),
    f("maximum", 6, Double),
    f("exclusiveMaximum", 7, Bool),
    f("minimum", 8, Double),
    f("exclusiveMinimum", 9, Bool),
    f("maxLength", 10, Int64),
    f("minLength", 11, Int64),
    f("pattern", 12, Str),
    f("maxItems", 13, Int64),
    f("minItems", 14, Int64),
    f("uniqueItems", 15, Bool),
    f("enum", 16, Msgs(&ANY)),
    f("multipleOf", 17, Double),
    f("description", 18, Str),
];

static PRIMITIVES_ITEMS: Message = Message::Fields {
    name: "PrimitivesItems",
    fields: HEADER_FIELDS.split_at(17).0,
    extensions: Some(18),
};

static HEADER: Message = Message::Fields {
    name: "Header",
    fields: &HEADER_FIELDS,
    extensions: Some(19),
};

/// `Responses`: three-digit codes and `default` are `NamedResponseValue`s (field 1), `x-` keys
/// vendor extensions (field 2).
static RESPONSES: Message = Message::Custom("Responses", |w, v, r| {
    let Some(obj) = v.as_object() else {
        return false;
    };
    let is_code =
        |k: &str| k == "default" || (k.len() == 3 && k.bytes().all(|b| b.is_ascii_digit()));
    for (k, x) in obj {
        if is_code(k) {
            named(w, 1, k, x, &RESPONSE_VALUE, r);
        } else if !k.starts_with("x-") {
            r.skip("Responses", k);
        }
    }
    for (k, x) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        named(w, 2, k, x, &ANY, r);
    }
    true
});

static RESPONSE_VALUE: Message =
    Message::Custom("ResponseValue", |w, v, r| reference_or(w, v, r, &RESPONSE));

static RESPONSE: Message = Message::Fields {
    name: "Response",
    fields: &[
        f("description", 1, Str),
        f("schema", 2, Msg(&SCHEMA_ITEM)),
        f("headers", 3, Named(&HEADER)),
        f("examples", 4, Named(&ANY)),
    ],
    extensions: Some(5),
};

/// `SchemaItem`: a `FileSchema` (field 2) for `type: file`, else a `Schema` (field 1).
static SCHEMA_ITEM: Message = Message::Custom("SchemaItem", |w, v, r| {
    if !v.is_object() {
        return false;
    }
    if v.get("type").and_then(Value::as_str) == Some("file") {
        w.message(2, |w| encode(w, &FILE_SCHEMA, v, r));
    } else {
        w.message(1, |w| encode(w, &SCHEMA, v, r));
    }
    true
});

static FILE_SCHEMA: Message = Message::Fields {
    name: "FileSchema",
    fields: &[
        f("format", 1, Str),
        f("title", 2, Str),
        f("description", 3, Str),
        f("default", 4, Msg(&ANY)),
        f("required", 5, Strings),
        f("type", 6, Str),
        f("readOnly", 7, Bool),
        f("externalDocs", 8, Msg(&EXTERNAL_DOCS)),
        f("example", 9, Msg(&ANY)),
    ],
    extensions: Some(10),
};

static SCHEMA: Message = Message::Fields {
    name: "Schema",
    fields: &[
        f("$ref", 1, Str),
        f("format", 2, Str),
        f("title", 3, Str),
        f("description", 4, Str),
        f("default", 5, Msg(&ANY)),
        f("multipleOf", 6, Double),
        f("maximum", 7, Double),
        f("exclusiveMaximum", 8, Bool),
        f("minimum", 9, Double),
        f("exclusiveMinimum", 10, Bool),
        f("maxLength", 11, Int64),
        f("minLength", 12, Int64),
        f("pattern", 13, Str),
        f("maxItems", 14, Int64),
        f("minItems", 15, Int64),
        f("uniqueItems", 16, Bool),
        f("maxProperties", 17, Int64),
        f("minProperties", 18, Int64),
        f("required", 19, Strings),
        f("enum", 20, Msgs(&ANY)),
        f("additionalProperties", 21, Msg(&ADDITIONAL_PROPERTIES_ITEM)),
        f("type", 22, Msg(&TYPE_ITEM)),
        f("items", 23, Msg(&ITEMS_ITEM)),
        f("allOf", 24, Msgs(&SCHEMA)),
        f("properties", 25, Named(&SCHEMA)),
        f("discriminator", 26, Str),
        f("readOnly", 27, Bool),
        f("xml", 28, Msg(&XML)),
        f("externalDocs", 29, Msg(&EXTERNAL_DOCS)),
        f("example", 30, Msg(&ANY)),
    ],
    extensions: Some(31),
};

/// `AdditionalPropertiesItem`: a schema (field 1) or a boolean (field 2). A oneof member is
/// written even when it holds its default, so `false` is written too.
static ADDITIONAL_PROPERTIES_ITEM: Message =
    Message::Custom("AdditionalPropertiesItem", |w, v, r| match v {
        Value::Bool(b) => {
            w.bool(2, *b);
            true
        }
        Value::Object(_) => {
            w.message(1, |w| encode(w, &SCHEMA, v, r));
            true
        }
        _ => false,
    });

/// `TypeItem`: `repeated string value = 1`, from one type name or a list of them.
static TYPE_ITEM: Message = Message::Custom("TypeItem", |w, v, _| {
    let names: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let texts: Option<Vec<String>> = names.into_iter().map(scalar_text).collect();
    match texts {
        Some(t) => {
            t.iter().for_each(|s| w.string(1, s));
            true
        }
        None => false,
    }
});

/// Any scalar by its text, as gnostic reads a `TypeItem` entry.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

/// `ItemsItem`: `repeated Schema schema = 1`, which gnostic fills from one schema only (it
/// refuses the tuple form, a list of schemas).
static ITEMS_ITEM: Message = Message::Custom("ItemsItem", |w, v, r| {
    if !v.is_object() {
        return false;
    }
    w.message(1, |w| encode(w, &SCHEMA, v, r));
    true
});

static XML: Message = Message::Fields {
    name: "Xml",
    fields: &[
        f("name", 1, Str),
        f("namespace", 2, Str),
        f("prefix", 3, Str),
        f("attribute", 4, Bool),
        f("wrapped", 5, Bool),
    ],
    extensions: Some(6),
};

#[cfg(test)]
#[path = "openapi_proto_tests.rs"]
mod tests;
