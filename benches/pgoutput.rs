//! Decoding the change stream: pgoutput bytes of `resources` row changes to typed messages,
//! and on to the rows and objects the watch state is fed with.
//!
//! The bytes are what the server's replication session receives: pgwire-replication handles
//! Begin and Commit itself and hands over each other XLogData payload, which `cdc/stream.rs`
//! decodes with a protocol v1 [`Decoder`]. The session starts the stream with pgoutput's
//! `binary` option, so tuple values are in binary format (`b`): uuid as 16 bytes, int8 and
//! timestamptz as 8, text as UTF-8, jsonb as a version byte and JSON text. The relation is
//! the `resources` table of `sql/0001_resources.sql`, column for column.
//!
//! Three stages, each over one Relation message and then [`CHANGES`] row changes (a quarter
//! inserts, the rest status updates, as controllers write), so the throughput is row
//! changes per second:
//! - `decode`: bytes to [`Message`]s only;
//! - `decode_row`: plus `cdc::rows::Layout::row`, the binary values to typed columns
//!   (jsonb parsed);
//! - `decode_row_obj`: plus what `cdc/stream.rs` does next for each change,
//!   `store::row::assemble` and `Obj::new` (which serializes the object once). The stream
//!   builds a previous image of the row only for unchanged TOASTed columns, and these
//!   changes send every column, so there is none here.
//!
//! Each runs with a ~250-byte spec and a ~4 KB spec. Updates carry the whole row: a 4 KB
//! JSON spec compresses below the TOAST threshold, so PostgreSQL stores it inline and sends
//! it with every update rather than as an unchanged-TOAST marker.

mod common;

use std::hint::black_box;
use std::io;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use uuid::Uuid;

use ark_apiserver::cdc::rows::{Layout, Row};
use ark_apiserver::pgoutput::{Decoder, Message, ProtocolVersion};
use ark_apiserver::store::row::{assemble, Columns};
use ark_apiserver::watch::Obj;

/// Row changes per iteration.
const CHANGES: usize = 1_000;
/// Each object is inserted once and then updated this many times.
const UPDATES_PER_INSERT: usize = 3;
/// An arbitrary relation oid, as PostgreSQL would assign.
const RELATION_ID: u32 = 16_385;

// Type oids from pg_type.
const UUID: u32 = 2950;
const TEXT: u32 = 25;
const INT8: u32 = 20;
const JSONB: u32 = 3802;
const TIMESTAMPTZ: u32 = 1184;

/// The columns of `resources` in table order, with their types.
const TABLE: [(&str, u32); 19] = [
    ("uid", UUID),
    ("kind", TEXT),
    ("api_version", TEXT),
    ("namespace", TEXT),
    ("name", TEXT),
    ("resource_version", INT8),
    ("generation", INT8),
    ("spec", JSONB),
    ("status", JSONB),
    ("labels", JSONB),
    ("annotations", JSONB),
    ("finalizers", JSONB),
    ("owner_references", JSONB),
    ("managed_fields", JSONB),
    ("extra", JSONB),
    ("created_at", TIMESTAMPTZ),
    ("updated_at", TIMESTAMPTZ),
    ("deletion_timestamp", TIMESTAMPTZ),
    ("deleted_at", TIMESTAMPTZ),
];

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

/// The Relation message PostgreSQL sends for `resources` (replica identity default: the
/// primary key `uid` is the key column).
fn relation_message() -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(RELATION_ID);
    cstr(&mut b, "public");
    cstr(&mut b, "resources");
    b.put_u8(b'd');
    b.put_u16(TABLE.len() as u16);
    for (name, oid) in TABLE {
        b.put_u8(u8::from(name == "uid"));
        cstr(&mut b, name);
        b.put_u32(oid);
        b.put_i32(-1);
    }
    b.freeze()
}

/// Writes JSON as PostgreSQL's jsonb output does: `", "` and `": "` separators.
struct JsonbFormatter;

impl serde_json::ser::Formatter for JsonbFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// jsonb's `", "` between array items and between object members.
fn separator<W: ?Sized + io::Write>(w: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

/// jsonb stores object keys shorter first, then bytewise, and outputs them in that order.
fn jsonb_order(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), jsonb_order(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(jsonb_order).collect()),
        other => other.clone(),
    }
}

/// jsonb's binary send format: version 1, then the text.
fn jsonb_text(v: &Value) -> Vec<u8> {
    let mut out = vec![1u8];
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JsonbFormatter);
    serde::Serialize::serialize(&jsonb_order(v), &mut ser).expect("a Value serializes");
    out
}

fn value(b: &mut BytesMut, bytes: &[u8]) {
    b.put_u8(b'b');
    b.put_i32(bytes.len() as i32);
    b.put_slice(bytes);
}

fn timestamptz(b: &mut BytesMut, t: chrono::DateTime<chrono::Utc>) {
    value(
        b,
        &(t.timestamp_micros() - PG_EPOCH_UNIX_MICROS).to_be_bytes(),
    );
}

/// TupleData of one `resources` row in binary format.
fn tuple(b: &mut BytesMut, c: &Columns, resource_version: i64) {
    b.put_u16(TABLE.len() as u16);
    value(b, c.uid.as_bytes());
    value(b, c.kind.as_bytes());
    value(b, c.api_version.as_bytes());
    value(b, c.namespace.as_bytes());
    value(b, c.name.as_bytes());
    value(b, &resource_version.to_be_bytes());
    value(b, &c.generation.to_be_bytes());
    for json in [&c.spec, &c.status] {
        match json {
            Some(v) => value(b, &jsonb_text(v)),
            None => b.put_u8(b'n'),
        }
    }
    for json in [
        &c.labels,
        &c.annotations,
        &c.finalizers,
        &c.owner_references,
        &c.managed_fields,
        &c.extra,
    ] {
        value(b, &jsonb_text(json));
    }
    timestamptz(b, c.created_at);
    timestamptz(b, c.created_at); // updated_at
    b.put_u8(b'n'); // deletion_timestamp
    b.put_u8(b'n'); // deleted_at
}

fn insert_message(c: &Columns, rv: i64) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'I');
    b.put_u32(RELATION_ID);
    b.put_u8(b'N');
    tuple(&mut b, c, rv);
    b.freeze()
}

/// An update that keeps the key: no old tuple, only the new one.
fn update_message(c: &Columns, rv: i64) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'U');
    b.put_u32(RELATION_ID);
    b.put_u8(b'N');
    tuple(&mut b, c, rv);
    b.freeze()
}

/// An Agent spec of about `target` bytes as jsonb text: a few references and tools, and a
/// prompt long enough to reach the size.
fn spec(i: usize, target: usize) -> Value {
    let tools: Vec<Value> = ["web-search", "calculator", "weather", "github", "jira"]
        .iter()
        .take(if target > 1_000 { 5 } else { 1 })
        .map(|t| json!({"type": "mcp", "name": t}))
        .collect();
    let mut spec = json!({
        "description": format!("support agent {i}"),
        "modelRef": {"name": "default"},
        "tools": tools,
        "prompt": "",
    });
    let base = jsonb_text(&spec).len() - 1;
    let sentence = "You answer questions about the customer's order history politely. ";
    let prompt: String = sentence
        .chars()
        .cycle()
        .take(target.saturating_sub(base))
        .collect();
    spec["prompt"] = Value::String(prompt);
    spec
}

/// A complete Agent as the registry stores it, split into the row's columns.
fn agent(i: usize, spec: &Value, status_phase: &str, rv: i64) -> Columns {
    let obj = json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": format!("agent-{i}"),
            "namespace": format!("team-{}", i % 7),
            "uid": Uuid::from_u128(0x6c1b_4a54_8b7e_4a4e_9a57_0000_0000_0000 + i as u128).to_string(),
            "resourceVersion": rv.to_string(),
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"app.kubernetes.io/name": "support", "app.kubernetes.io/part-of": "ark", "tier": "backend"},
            "annotations": {"ark.mckinsey.com/owner": "platform-team"},
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update",
                "apiVersion": "ark.mckinsey.com/v1alpha1", "time": "2026-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}, "f:spec": {".": {}, "f:modelRef": {}, "f:prompt": {}, "f:tools": {}}}
            }]
        },
        "spec": spec,
        "status": {
            "phase": status_phase,
            "conditions": [{"type": "Available", "status": "True", "reason": "ModelReady",
                            "lastTransitionTime": "2026-01-02T03:04:09Z", "observedGeneration": 1}]
        }
    });
    Columns::from_object(&obj).expect("a complete object")
}

/// One Relation message, then the row changes, as the session receives them.
struct Stream {
    messages: Vec<Bytes>,
    bytes: usize,
}

fn stream(spec_bytes: usize) -> Stream {
    let mut messages = vec![relation_message()];
    let mut rv = 0i64;
    let objects = CHANGES / (1 + UPDATES_PER_INSERT);
    for i in 0..objects {
        let spec = spec(i, spec_bytes);
        rv += 1;
        messages.push(insert_message(&agent(i, &spec, "Pending", rv), rv));
        for phase in ["Ready", "Busy", "Ready"]
            .iter()
            .cycle()
            .take(UPDATES_PER_INSERT)
        {
            rv += 1;
            messages.push(update_message(&agent(i, &spec, phase, rv), rv));
        }
    }
    assert_eq!(messages.len(), CHANGES + 1);
    let bytes = messages.iter().map(Bytes::len).sum();
    Stream { messages, bytes }
}

/// Decodes every message; returns the number of row changes.
fn decode(messages: &[Bytes]) -> usize {
    let mut decoder = Decoder::new(ProtocolVersion::V1);
    let mut changes = 0;
    for m in messages {
        let msg = decoder.decode(m.clone()).expect("valid pgoutput");
        if matches!(msg, Message::Insert(_) | Message::Update(_)) {
            changes += 1;
        }
        black_box(msg);
    }
    changes
}

/// Decodes every message and turns each change into a row, as `cdc::rows` does, then hands
/// the row to `then`. Returns the number of changes.
fn decode_rows_with(messages: &[Bytes], mut then: impl FnMut(Row)) -> usize {
    let mut decoder = Decoder::new(ProtocolVersion::V1);
    let mut layout = None;
    let mut changes = 0;
    for m in messages {
        let tuple = match decoder.decode(m.clone()).expect("valid pgoutput") {
            Message::Relation(rel) => {
                layout = Some(Layout::new(&rel).expect("the resources layout"));
                continue;
            }
            Message::Insert(ins) => ins.new,
            Message::Update(up) => up.new,
            _ => continue,
        };
        assert!(!tuple.has_unchanged_toast(), "every column is sent");
        let (l, deleted_at) = layout.as_ref().expect("Relation comes first");
        then(l.row(&tuple, *deleted_at, None).expect("a valid row"));
        changes += 1;
    }
    changes
}

/// Decodes and turns every change into a row.
fn decode_rows(messages: &[Bytes]) -> usize {
    decode_rows_with(messages, |row| {
        black_box(row);
    })
}

/// Decodes and builds the state's objects, as `cdc/stream.rs` does for each change.
fn decode_objects(messages: &[Bytes]) -> usize {
    decode_rows_with(messages, |row| {
        black_box(Arc::new(Obj::new(assemble(row.cols, row.resource_version))));
    })
}

fn bench(c: &mut Criterion) {
    for (label, spec_bytes) in [("spec_250B", 250), ("spec_4KB", 4_096)] {
        let s = stream(spec_bytes);
        // The bytes must be what the server accepts: every stage sees every change, and the
        // rows carry what was encoded.
        assert_eq!(decode(&s.messages), CHANGES);
        assert_eq!(decode_rows(&s.messages), CHANGES);
        assert_eq!(decode_objects(&s.messages), CHANGES);
        check_round_trip(&s.messages, spec_bytes);
        eprintln!(
            "pgoutput/{label}: {} messages, {} bytes, {} bytes per change on average",
            s.messages.len(),
            s.bytes,
            s.bytes / CHANGES
        );

        let mut g = c.benchmark_group("pgoutput");
        g.throughput(Throughput::Elements(CHANGES as u64));
        g.bench_with_input(BenchmarkId::new("decode", label), &s.messages, |b, m| {
            b.iter(|| decode(m))
        });
        g.bench_with_input(
            BenchmarkId::new("decode_row", label),
            &s.messages,
            |b, m| b.iter(|| decode_rows(m)),
        );
        g.bench_with_input(
            BenchmarkId::new("decode_row_obj", label),
            &s.messages,
            |b, m| b.iter(|| decode_objects(m)),
        );
        g.finish();
    }
}

/// The first insert decodes back to the object it was built from, and the spec is the
/// size asked for (within the JSON framing).
fn check_round_trip(messages: &[Bytes], spec_bytes: usize) {
    let mut decoder = Decoder::new(ProtocolVersion::V1);
    let Message::Relation(rel) = decoder.decode(messages[0].clone()).unwrap() else {
        panic!("the first message is the Relation");
    };
    let (layout, deleted_at) = Layout::new(&rel).unwrap();
    let Message::Insert(ins) = decoder.decode(messages[1].clone()).unwrap() else {
        panic!("the second message is an Insert");
    };
    let row = layout.row(&ins.new, deleted_at, None).unwrap();
    assert!(!row.deleted);
    assert_eq!(row.resource_version, 1);
    let expected = spec(0, spec_bytes);
    assert_eq!(row.cols.spec.as_ref(), Some(&expected));
    let text = jsonb_text(&expected).len() - 1;
    assert!(text.abs_diff(spec_bytes) < 8, "spec is {text} bytes");
    let obj = assemble(row.cols, row.resource_version);
    assert_eq!(obj["metadata"]["name"], "agent-0");
    assert_eq!(obj["status"]["phase"], "Pending");
    assert!(obj["metadata"]["labels"].is_object());
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = bench
}
criterion_main!(benches);
