//! Tests of the protobuf encoder. The golden bytes below were checked against the real
//! protobuf runtime: Python's `protobuf` with gnostic's `OpenAPIv2.proto` compiled decoded
//! them as `openapi.v2.Document` with no unknown field, and encoded the same message, built
//! field by field from the JSON by gnostic's rules, to exactly these bytes; PyYAML read every
//! `Any.yaml` back as its JSON value.

use serde_json::{json, Value};

use super::*;
use crate::k8s::openapi::{openapi_v2, OpenApiResource};
use crate::k8s::resource::Resources;

/// One field read back: its number and payload. Just enough of a decoder to say which
/// branch of a oneof the encoder took.
#[derive(Debug, PartialEq)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(f64),
    Bytes(&'a [u8]),
}

fn read(mut b: &[u8]) -> Vec<(u32, Wire<'_>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let number = (key >> 3) as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut b)),
            1 => {
                let (d, rest) = b.split_at(8);
                b = rest;
                Wire::Fixed64(f64::from_le_bytes(d.try_into().unwrap()))
            }
            2 => {
                let len = varint(&mut b) as usize;
                let (d, rest) = b.split_at(len);
                b = rest;
                Wire::Bytes(d)
            }
            other => panic!("wire type {other}"),
        };
        out.push((number, wire));
    }
    out
}

/// The payload of the only field `number` of a message.
fn only(b: &[u8], number: u32) -> &[u8] {
    let fields = read(b);
    let found: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| *n == number)
        .map(|(_, w)| match w {
            Wire::Bytes(d) => *d,
            other => panic!("field {number} is {other:?}"),
        })
        .collect();
    assert_eq!(found.len(), 1, "field {number} in {fields:?}");
    found[0]
}

fn numbers(b: &[u8]) -> Vec<u32> {
    read(b).into_iter().map(|(n, _)| n).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn encoded(doc: &Value) -> Vec<u8> {
    let e = encode_document(doc);
    assert_eq!(e.skipped, Vec::<String>::new());
    e.bytes
}

#[test]
fn varints_are_base_128_low_group_first_and_negative_int64s_take_ten_bytes() {
    for (v, bytes) in [
        (0u64, vec![0x00]),
        (1, vec![0x01]),
        (127, vec![0x7f]),
        (128, vec![0x80, 0x01]),
        (300, vec![0xac, 0x02]),
        (u64::MAX, [vec![0xff; 9], vec![0x01]].concat()),
    ] {
        let mut w = Writer::default();
        w.varint(v);
        assert_eq!(w.0, bytes, "{v}");
    }
    let mut w = Writer::default();
    w.int64(11, -1);
    assert_eq!(w.0, [vec![0x58], vec![0xff; 9], vec![0x01]].concat());
    let mut w = Writer::default();
    w.double(7, 10.0);
    assert_eq!(hex(&w.0), "390000000000002440");
}

fn small_schema_document() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "t", "version": "v1"},
        "paths": {},
        "definitions": {"a.v1.B": {
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {"type": "object", "additionalProperties": false, "x-kubernetes-preserve-unknown-fields": true},
                "size": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 10},
                "tags": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "x-kubernetes-group-version-kind": [{"group": "a", "kind": "B", "version": "v1"}]
        }}
    })
}

#[test]
fn a_small_schema_document_encodes_to_the_bytes_the_protobuf_runtime_gives() {
    let bytes = encoded(&small_schema_document());
    assert_eq!(hex(&bytes), GOLDEN_SCHEMA);
}

const GOLDEN_SCHEMA: &str = concat!(
    "0a03322e3012070a01741202763142004aac020aa9020a06612e76312e42129e029a010473706563",
    "b201080a066f626a656374ca01bd010a4a0a04737065631242aa01021000b201080a066f626a6563",
    "74fa012f0a24782d6b756265726e657465732d70726573657276652d756e6b6e6f776e2d6669656c",
    "647312071205747275650a0a240a0473697a65121c1205696e743634390000000000002440b20109",
    "0a07696e74656765720a220a0474616773121ab201070a056172726179ba010d0a0bb201080a0673",
    "7472696e670a250a066c6162656c73121baa010d0a0bb201080a06737472696e67b201080a066f62",
    "6a656374fa01480a1f782d6b756265726e657465732d67726f75702d76657273696f6e2d6b696e64",
    "122512232d2067726f75703a20610a20206b696e643a20420a202076657273696f6e3a2076310a",
);

#[test]
fn schema_oneofs_take_the_branch_their_json_names() {
    let bytes = encoded(&small_schema_document());
    let definitions = only(&bytes, 9);
    let named = only(definitions, 1);
    assert_eq!(only(named, 1), b"a.v1.B");
    let schema = only(named, 2);
    // required 19, type 22, properties 25, then the extension 31.
    assert_eq!(numbers(schema), [19, 22, 25, 31]);
    assert_eq!(only(only(schema, 22), 1), b"object");
    let properties: Vec<&[u8]> = read(only(schema, 25))
        .into_iter()
        .map(|(_, w)| match w {
            Wire::Bytes(d) => only(d, 2),
            other => panic!("{other:?}"),
        })
        .collect();
    let [spec, size, tags, labels] = properties[..] else {
        panic!("four properties")
    };
    // additionalProperties: false is the boolean branch (2), written although false.
    assert_eq!(read(only(spec, 21)), [(2, Wire::Varint(0))]);
    // minimum 0 is proto3's default and left out; maximum is a double.
    assert_eq!(numbers(size), [2, 7, 22]);
    assert_eq!(read(size)[1], (7, Wire::Fixed64(10.0)));
    // items is an ItemsItem holding one schema.
    assert_eq!(only(only(only(only(tags, 23), 1), 22), 1), b"string");
    // additionalProperties as a schema is branch 1.
    assert_eq!(numbers(only(labels, 21)), [1]);
    // A vendor extension is a NamedAny whose Any holds YAML text in field 2.
    let extension = only(schema, 31);
    assert_eq!(only(extension, 1), b"x-kubernetes-group-version-kind");
    assert_eq!(
        only(only(extension, 2), 2),
        b"- group: a\n  kind: B\n  version: v1\n"
    );
}

fn paths_document() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "t", "version": "v1"},
        "paths": {"/apis/a/v1/bs/{name}": {
            "get": {
                "description": "read the specified B",
                "consumes": ["application/json"],
                "produces": ["application/json", "application/yaml"],
                "schemes": ["https"],
                "operationId": "readAV1B",
                "tags": ["a_v1"],
                "parameters": [
                    {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/a.v1.B"}},
                    {"name": "limit", "in": "query", "type": "integer", "uniqueItems": true},
                    {"$ref": "#/parameters/shared"}
                ],
                "responses": {
                    "200": {"description": "OK", "schema": {"$ref": "#/definitions/a.v1.B"}},
                    "401": {"description": "Unauthorized"}
                },
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": {"group": "a", "kind": "B", "version": "v1"}
            },
            "parameters": [
                {"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": "name of the B"}
            ]
        }},
        "definitions": {"a.v1.B": {"type": "object"}}
    })
}

#[test]
fn paths_parameters_and_responses_encode_to_the_bytes_the_protobuf_runtime_gives() {
    let bytes = encoded(&paths_document());
    assert_eq!(hex(&bytes), GOLDEN_PATHS);
}

const GOLDEN_PATHS: &str = concat!(
    "0a03322e3012070a01741202763142c00312bd030a142f617069732f612f76312f62732f7b6e616d",
    "657d12a40312f1020a04615f76311a1472656164207468652073706563696669656420422a087265",
    "61644156314232106170706c69636174696f6e2f6a736f6e32106170706c69636174696f6e2f7961",
    "6d6c3a106170706c69636174696f6e2f6a736f6e422a0a280a261204626f64791a04626f64792001",
    "2a160a14232f646566696e6974696f6e732f612e76312e4242200a1e121c1a1a1205717565727922",
    "056c696d69743207696e7465676572a00101421712150a13232f706172616d65746572732f736861",
    "7265644a420a270a0332303012200a1e0a024f4b12180a160a14232f646566696e6974696f6e732f",
    "612e76312e420a170a0334303112100a0e0a0c556e617574686f72697a6564520568747470736a1d",
    "0a13782d6b756265726e657465732d616374696f6e120612046765740a6a420a1f782d6b75626572",
    "6e657465732d67726f75702d76657273696f6e2d6b696e64121f121d67726f75703a20610a6b696e",
    "643a20420a76657273696f6e3a2076310a4a2e0a2c122a222808011204706174681a0d6e616d6520",
    "6f6620746865204222046e616d652a06737472696e679801014a170a150a06612e76312e42120bb2",
    "01080a066f626a656374",
);

#[test]
fn parameters_take_the_branch_their_in_names_and_refs_are_json_references() {
    let bytes = encoded(&paths_document());
    let path = only(only(&bytes, 8), 2);
    assert_eq!(only(path, 1), b"/apis/a/v1/bs/{name}");
    let item = only(path, 2);
    // get (2) before the path's parameters (9).
    assert_eq!(numbers(item), [2, 9]);
    let path_param = only(only(only(item, 9), 1), 2);
    assert_eq!(
        numbers(path_param),
        [4],
        "NonBodyParameter.path_parameter_sub_schema"
    );
    let operation = only(item, 2);
    assert_eq!(
        numbers(operation),
        [1, 3, 5, 6, 6, 7, 8, 8, 8, 9, 10, 13, 13]
    );
    let params: Vec<&[u8]> = read(operation)
        .into_iter()
        .filter(|(n, _)| *n == 8)
        .map(|(_, w)| match w {
            Wire::Bytes(d) => d,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(numbers(only(params[0], 1)), [1], "Parameter.body_parameter");
    assert_eq!(
        numbers(only(only(params[1], 1), 2)),
        [3],
        "query sub-schema"
    );
    assert_eq!(only(only(params[2], 2), 1), b"#/parameters/shared");
    let responses = only(operation, 9);
    let codes: Vec<Vec<u32>> = read(responses)
        .into_iter()
        .map(|(n, w)| {
            assert_eq!(n, 1, "response_code");
            match w {
                Wire::Bytes(d) => numbers(only(d, 2)),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    // Both are ResponseValue.response (1); the $ref is inside its schema.
    assert_eq!(codes, [vec![1], vec![1]]);
}

#[test]
fn vendor_extension_values_are_block_yaml() {
    assert_eq!(yaml(&json!(true)), "true\n");
    assert_eq!(yaml(&json!("get")), "get\n");
    assert_eq!(yaml(&json!(["a", "b"])), "- a\n- b\n");
    assert_eq!(yaml(&json!([])), "[]\n");
    assert_eq!(
        yaml(&json!({"group": "ark.mckinsey.com", "kind": "Agent", "version": "v1alpha1"})),
        "group: ark.mckinsey.com\nkind: Agent\nversion: v1alpha1\n"
    );
    assert_eq!(
        yaml(&json!([{"rule": "self.x > 0", "keys": ["a"], "empty": {}}])),
        "- rule: \"self.x > 0\"\n  keys:\n    - a\n  empty: {}\n"
    );
    assert_eq!(
        yaml(&json!([1, -2.5, 1e300, 1.5e-7, 12345678901234567890u64])),
        "- 1\n- -2.5\n- 1.0e+300\n- 1.5e-7\n- 12345678901234567890\n"
    );
    assert_eq!(
        yaml(&json!({"a": {"b": [[1, 2], null]}})),
        "a:\n  b:\n    - - 1\n      - 2\n    - null\n"
    );
}

#[test]
fn yaml_quotes_every_string_a_resolver_could_read_as_something_else() {
    for s in [
        "",
        "true",
        "No",
        "Y",
        "off",
        "null",
        "~",
        "1",
        "1.5",
        "0x1f",
        ".inf",
        "-",
        "a: b",
        "#x",
        "x #y",
        " lead",
        "trail ",
        "2024-01-01",
        "multi\nline",
        "tab\t",
        "é",
        "\u{85}",
        "q\"uote",
        "back\\slash",
        "*alias",
        "&anchor",
        "!tag",
        "{}",
        "[a]",
    ] {
        let text = yaml(&json!(s));
        assert!(text.starts_with('"'), "{s:?} -> {text}");
    }
    assert_eq!(yaml(&json!("multi\nline")), "\"multi\\nline\"\n");
    assert_eq!(yaml(&json!("\u{85}")), "\"\\u0085\"\n");
    for s in [
        "ark.mckinsey.com",
        "Agent",
        "v1alpha1",
        "io.k8s/meta",
        "a b",
        "snake_case",
    ] {
        assert_eq!(yaml(&json!(s)), format!("{s}\n"));
    }
}

#[test]
fn keys_without_a_field_are_left_out_and_reported() {
    let doc = json!({
        "swagger": "2.0",
        "bogus": 1,
        "info": {"title": "t", "version": "v1"},
        "definitions": {"A": {"type": "object", "nullable": true, "maxLength": 1.5, "items": [{}]}}
    });
    let e = encode_document(&doc);
    assert_eq!(
        e.skipped,
        [
            "Document.bogus",
            "Schema.items",
            "Schema.maxLength",
            "Schema.nullable"
        ]
    );
    // The rest is still there.
    assert_eq!(numbers(&e.bytes), [1, 2, 9]);
    assert_eq!(
        encode_document(&json!([])).skipped,
        ["Document.(not an object)"]
    );
}

/// Every table message, for the checks below.
fn tables() -> Vec<&'static Message> {
    vec![
        &DOCUMENT,
        &INFO,
        &CONTACT,
        &LICENSE,
        &EXTERNAL_DOCS,
        &TAG,
        &JSON_REFERENCE,
        &PATH_ITEM,
        &OPERATION,
        &BODY_PARAMETER,
        &HEADER_PARAMETER,
        &PATH_PARAMETER,
        &QUERY_PARAMETER,
        &FORM_DATA_PARAMETER,
        &PRIMITIVES_ITEMS,
        &HEADER,
        &RESPONSE,
        &FILE_SCHEMA,
        &SCHEMA,
        &XML,
    ]
}

#[test]
fn tables_list_fields_in_number_order_below_the_extension_field() {
    for m in tables() {
        let Message::Fields {
            name,
            fields,
            extensions,
        } = m
        else {
            panic!("not a table")
        };
        let numbers: Vec<u32> = fields.iter().map(|f| f.number).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{name}: {numbers:?}"
        );
        if let (Some(last), Some(ext)) = (numbers.last(), extensions) {
            assert!(last < ext, "{name}");
        }
    }
}

fn served_document(resources: &Resources) -> Value {
    let oa: Vec<OpenApiResource<'_>> = resources
        .all()
        .iter()
        .map(|d| OpenApiResource::from(d.as_ref()))
        .collect();
    openapi_v2(&oa)
}

#[test]
fn the_served_document_encodes_without_leaving_anything_out() {
    let doc = served_document(&Resources::builtin().unwrap());
    let e = encode_document(&doc);
    assert_eq!(e.skipped, Vec::<String>::new());
    assert_eq!(&e.bytes[..5], b"\x0a\x032.0");
    // Every definition is there, by name, in document order.
    let names: Vec<&[u8]> = read(only(&e.bytes, 9))
        .into_iter()
        .map(|(_, w)| match w {
            Wire::Bytes(d) => only(d, 1),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<&[u8]> = doc["definitions"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_bytes())
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn the_reference_crds_encode_without_leaving_anything_out() {
    let Some(base) = crate::k8s::schema::reference_dir() else {
        return;
    };
    // The same kinds as the builtin ones, which they replace, as `--crd-dir` would.
    let mut resources = Resources::builtin().unwrap();
    assert!(resources.add_dir(&base.join("crds")).unwrap() > 0);
    let e = encode_document(&served_document(&resources));
    assert_eq!(e.skipped, Vec::<String>::new());
}
