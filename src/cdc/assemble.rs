//! Transaction assembly: replication events in; committed transactions, gaps and progress
//! out. Pure: no I/O, no clock, no channel. The wire layer (`stream`) feeds it what the
//! walsender sent, and the one consumer (`consume`) applies what comes out, so this layer
//! is tested on bytes alone.
//!
//! What it decides:
//! - which rows of a transaction are changes a watcher must see (a row at or below the
//!   state's resourceVersion is a replay after a restart or reconnect and is skipped: rvs
//!   are global and in commit order, and commits apply whole);
//! - how an unchanged TOASTed column is filled (from the row's earlier image in the same
//!   transaction, else from the object the state holds);
//! - when a transaction cannot be applied as changes (TRUNCATE, a hard delete of a live
//!   row): a gap, which the consumer answers with a re-seed;
//! - when the position may advance with nothing in flight (a keepalive or a
//!   non-transactional logical message outside any transaction).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::rows::{Layout, Row, RowError};
use crate::pgoutput::{Decoder, Message, ProtocolVersion};
use crate::store::row::Columns;
use crate::watch::{Change, Dict, Obj, Rv, State};

/// What the assembler needs to know of the state it feeds: how far it is, and the stored
/// object of a row (the previous image of an UPDATE whose TOASTed columns are unchanged,
/// and whether a hard-deleted row was live).
pub trait Known {
    fn rv(&self) -> Rv;
    fn by_uid(&self, uid: &Uuid) -> Option<Arc<Obj>>;
    /// The dictionary the state compresses a kind's cold objects with, if it has one.
    fn dict(&self, _kind: &str) -> Option<Arc<Dict>> {
        None
    }
}

impl Known for State {
    fn rv(&self) -> Rv {
        State::rv(self)
    }
    fn by_uid(&self, uid: &Uuid) -> Option<Arc<Obj>> {
        self.get_by_uid(&uid.to_string())
    }
    fn dict(&self, kind: &str) -> Option<Arc<Dict>> {
        State::dict(self, kind)
    }
}

/// A transaction with more changed rows than this is a backfill: its objects are built
/// cold (compressed with their kind's dictionary) as they arrive. Held plain, a
/// 200,000-row UPDATE of every object kept a plain copy of each until the state trimmed
/// its events, on top of the cold versions it replaced (2.4 times the JSON at the peak).
/// A watcher then decompresses each event it is sent, about half a microsecond.
pub const BACKFILL_ROWS: usize = 1_000;

/// One replication event, as the wire layer hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Begin,
    /// A pgoutput message inside the stream (Relation, Insert, Update, Delete, ...).
    Data(Bytes),
    Commit {
        end_lsn: u64,
    },
    /// The walsender's WAL end, from a keepalive.
    KeepAlive {
        wal_end: u64,
    },
    /// A non-transactional logical message: a consistent read's read point or the
    /// heartbeat.
    Marker {
        lsn: u64,
    },
}

/// What a committed stretch of the stream means for the state.
#[derive(Debug, Clone)]
pub enum Output {
    /// A transaction committed at `end_lsn`; `changes` are its rows the state has not yet
    /// applied, in commit order (empty when all were replays or none touched `resources`).
    Commit { changes: Vec<Change>, end_lsn: u64 },
    /// A transaction committed at `end_lsn` that cannot be applied as changes: the state
    /// must be re-seeded from a snapshot taken after it.
    Gap { why: String, end_lsn: u64 },
    /// Nothing is in flight and every commit up to `lsn` has been handed out.
    Progress { lsn: u64 },
}

/// The stream's bytes are not what this binary can apply. Always the end of the session
/// (the consumer reconnects); never a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot decode the replication stream: {0}")]
pub struct AssembleError(pub String);

impl From<RowError> for AssembleError {
    fn from(e: RowError) -> Self {
        AssembleError(e.to_string())
    }
}

/// The open transaction being assembled.
#[derive(Default)]
struct Txn {
    changes: Vec<Change>,
    /// Rows changed earlier in this transaction, as the objects built from them: the
    /// previous image for TOAST fills. The objects are those in `changes` (shared); the
    /// columns are parsed back from one only when a later change of the same row leaves
    /// a TOASTed column unchanged. Keeping every row's parsed columns instead cost eight
    /// times the JSON of a transaction for its whole length (a 200,000-row UPDATE peaked
    /// at ten times the state's JSON).
    images: HashMap<Uuid, Arc<Obj>>,
    /// Why the transaction cannot be applied as a change list, once known.
    gap: Option<String>,
    /// The last kind a backfill's row was of, and its dictionary.
    dict: Option<(String, Option<Arc<Dict>>)>,
}

/// The assembler of one replication session (a Relation message is sent once per session,
/// so a new session needs a new assembler).
pub struct Assembler {
    decoder: Decoder,
    layout: Option<(Layout, Option<usize>)>,
    txn: Option<Txn>,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

impl Assembler {
    pub fn new() -> Assembler {
        Assembler {
            decoder: Decoder::new(ProtocolVersion::V1),
            layout: None,
            txn: None,
        }
    }

    /// Takes one event; returns what it completed, if anything.
    pub fn push(
        &mut self,
        input: Input,
        known: &dyn Known,
    ) -> Result<Option<Output>, AssembleError> {
        Ok(match input {
            Input::Begin => {
                self.txn = Some(Txn::default());
                None
            }
            Input::Data(data) => {
                let txn = self.txn.get_or_insert_with(Txn::default);
                let mut view = Rows {
                    decoder: &mut self.decoder,
                    layout: &mut self.layout,
                    txn,
                    known,
                };
                view.take(data)?;
                None
            }
            Input::Commit { end_lsn } => {
                let t = self.txn.take().unwrap_or_default();
                Some(match t.gap {
                    Some(why) => Output::Gap { why, end_lsn },
                    None => Output::Commit {
                        changes: t.changes,
                        end_lsn,
                    },
                })
            }
            Input::KeepAlive { wal_end: lsn } | Input::Marker { lsn } => {
                self.txn.is_none().then_some(Output::Progress { lsn })
            }
        })
    }

    /// Whether a transaction is open (begun, not yet committed).
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }
}

/// One data message, decoded against the layout and the open transaction.
struct Rows<'a> {
    decoder: &'a mut Decoder,
    layout: &'a mut Option<(Layout, Option<usize>)>,
    txn: &'a mut Txn,
    known: &'a dyn Known,
}

impl Rows<'_> {
    fn take(&mut self, data: Bytes) -> Result<(), AssembleError> {
        let applied_rv = self.known.rv();
        let message = self
            .decoder
            .decode(data)
            .map_err(|e| AssembleError(e.to_string()))?;
        match message {
            Message::Relation(rel) if rel.name == "resources" => {
                *self.layout = Some(Layout::new(&rel)?);
            }
            Message::Insert(ins) => {
                let (l, del) = current(self.layout, ins.relation_id)?;
                // A replayed transaction's rows are all at or below the state's rv, and
                // none needs decoding, not even as a TOAST image for a later row.
                if rv_of(l.resource_version(&ins.new)?) <= applied_rv {
                    return Ok(());
                }
                let row = l.row(&ins.new, *del, None)?;
                push(self.txn, row, applied_rv, self.known);
            }
            Message::Update(up) => {
                let (l, del) = current(self.layout, up.relation_id)?;
                if rv_of(l.resource_version(&up.new)?) <= applied_rv {
                    return Ok(());
                }
                let uid = l.key_uid(&up.new)?;
                // The previous image is needed only to fill unchanged TOASTed columns;
                // building it from the state means parsing the stored object, so only then.
                let known = self.known;
                let prev = up
                    .new
                    .has_unchanged_toast()
                    .then(|| {
                        self.txn
                            .images
                            .get(&uid)
                            .cloned()
                            .or_else(|| known.by_uid(&uid))
                    })
                    .flatten()
                    .and_then(|o| Columns::from_object(&o.value()).ok());
                match l.row(&up.new, *del, prev.as_ref()) {
                    Ok(row) => push(self.txn, row, applied_rv, known),
                    // A row this server never saw live (an edit of an already-deleted
                    // row): nothing a watcher could be told about.
                    Err(RowError::UnknownToast(_)) if prev.is_none() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Message::Delete(d) => {
                let (l, _) = current(self.layout, d.relation_id)?;
                let uid = l.key_uid(d.old.tuple())?;
                // The purge removes rows already soft-deleted. A live row deleted without
                // the soft-delete trigger has no resourceVersion for its DELETED event.
                if self.known.by_uid(&uid).is_some() && !self.txn.images.contains_key(&uid) {
                    self.txn.gap = Some(format!("row {uid} was hard-deleted while live"));
                }
            }
            Message::Truncate(t)
                if self
                    .layout
                    .as_ref()
                    .is_some_and(|(l, _)| t.relation_ids.contains(&l.relation_id)) =>
            {
                self.txn.gap = Some("resources was truncated".into());
            }
            _ => {}
        }
        Ok(())
    }
}

fn rv_of(rv: i64) -> Rv {
    rv.max(0) as Rv
}

fn current(
    layout: &Option<(Layout, Option<usize>)>,
    relation_id: u32,
) -> Result<&(Layout, Option<usize>), AssembleError> {
    match layout {
        Some(l) if l.0.relation_id == relation_id => Ok(l),
        Some(_) => Err(AssembleError(format!(
            "change for relation {relation_id}, which is not resources"
        ))),
        None => Err(AssembleError(format!(
            "change for relation {relation_id} before its Relation message"
        ))),
    }
}

fn push(txn: &mut Txn, row: Row, applied_rv: Rv, known: &dyn Known) {
    if rv_of(row.resource_version) <= applied_rv {
        // The state holds this version: a later change of the row finds its image there.
        return;
    }
    let uid = row.cols.uid;
    let mut obj = Obj::new(crate::store::row::assemble(row.cols, row.resource_version));
    if txn.changes.len() >= BACKFILL_ROWS {
        if txn
            .dict
            .as_ref()
            .is_none_or(|(k, _)| k.as_str() != obj.kind())
        {
            txn.dict = Some((obj.kind().to_string(), known.dict(obj.kind())));
        }
        if let Some((_, Some(dict))) = &txn.dict {
            obj = obj.cooled(dict).unwrap_or(obj);
        }
    }
    let obj = Arc::new(obj);
    txn.images.insert(uid, Arc::clone(&obj));
    txn.changes.push(if row.deleted {
        Change::Delete(obj)
    } else {
        Change::Put(obj)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A state that has applied nothing and holds nothing.
    struct Empty;
    impl Known for Empty {
        fn rv(&self) -> Rv {
            0
        }
        fn by_uid(&self, _: &Uuid) -> Option<Arc<Obj>> {
            None
        }
    }

    fn feed(data: Bytes) -> (Result<Option<Output>, AssembleError>, Assembler) {
        let mut a = Assembler::new();
        a.push(Input::Begin, &Empty).unwrap();
        let r = a.push(Input::Data(data), &Empty);
        (r, a)
    }

    #[test]
    fn malformed_stream_bytes_are_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\xff\x00\x01",
            // An Insert cut short after its relation id.
            b"I\x00\x00\x40\x00",
            // A well-formed Insert of a relation never described by a Relation message.
            b"I\x00\x00\x40\x00N\x00\x01t\x00\x00\x00\x01x",
        ] {
            let (r, mut a) = feed(Bytes::from_static(bad));
            assert!(r.is_err(), "{bad:?} was accepted");
            match a.push(Input::Commit { end_lsn: 1 }, &Empty) {
                Ok(Some(Output::Commit { changes, .. })) => assert!(changes.is_empty()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn progress_is_reported_only_outside_a_transaction() {
        let mut a = Assembler::new();
        assert!(matches!(
            a.push(Input::KeepAlive { wal_end: 10 }, &Empty),
            Ok(Some(Output::Progress { lsn: 10 }))
        ));
        a.push(Input::Begin, &Empty).unwrap();
        assert!(a.in_transaction());
        assert!(matches!(
            a.push(Input::Marker { lsn: 20 }, &Empty),
            Ok(None)
        ));
        assert!(matches!(
            a.push(Input::KeepAlive { wal_end: 30 }, &Empty),
            Ok(None)
        ));
        assert!(matches!(
            a.push(Input::Commit { end_lsn: 40 }, &Empty),
            Ok(Some(Output::Commit { end_lsn: 40, .. }))
        ));
        assert!(!a.in_transaction());
        assert!(matches!(
            a.push(Input::Marker { lsn: 50 }, &Empty),
            Ok(Some(Output::Progress { lsn: 50 }))
        ));
    }

    fn relation(id: u32, name: &str) -> Bytes {
        use crate::pgoutput::{Column, Relation, ReplicaIdentity};
        let mut columns: Vec<Column> = crate::store::row::Column::ALL
            .iter()
            .map(|c| Column {
                flags: 0,
                name: c.name().to_string(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect();
        columns.push(Column {
            flags: 0,
            name: crate::store::row::DELETED_AT.to_string(),
            type_oid: 1184,
            type_modifier: -1,
        });
        crate::pgoutput::tests::encode::encode(&Message::Relation(Relation {
            xid: None,
            id,
            namespace: "public".into(),
            name: name.into(),
            replica_identity: ReplicaIdentity::Default,
            columns,
        }))
    }

    fn truncate(ids: Vec<u32>) -> Bytes {
        crate::pgoutput::tests::encode::encode(&Message::Truncate(crate::pgoutput::Truncate {
            xid: None,
            options: 0,
            relation_ids: ids,
        }))
    }

    #[test]
    fn a_truncate_of_resources_is_a_gap_at_its_commit_and_of_another_table_is_not() {
        let mut a = Assembler::new();
        for input in [Input::Begin, Input::Data(relation(7, "resources"))] {
            assert!(a.push(input, &Empty).unwrap().is_none());
        }
        a.push(Input::Data(truncate(vec![99])), &Empty).unwrap();
        match a.push(Input::Commit { end_lsn: 5 }, &Empty) {
            Ok(Some(Output::Commit {
                changes,
                end_lsn: 5,
            })) => assert!(changes.is_empty()),
            other => panic!("{other:?}"),
        }
        a.push(Input::Begin, &Empty).unwrap();
        a.push(Input::Data(truncate(vec![99, 7])), &Empty).unwrap();
        match a.push(Input::Commit { end_lsn: 9 }, &Empty) {
            Ok(Some(Output::Gap { why, end_lsn: 9 })) => assert_eq!(why, "resources was truncated"),
            other => panic!("{other:?}"),
        }
    }

    /// An Insert of `resources` (relation 7) in pgoutput's binary format.
    fn insert(i: u64) -> Bytes {
        use crate::pgoutput::{Insert, TupleData, TupleValue};
        use crate::store::row::{Column, JsonColumn};
        let bin = |b: Vec<u8>| TupleValue::Binary(Bytes::from(b));
        let text = |t: String| bin(t.into_bytes());
        let jsonb = |v: serde_json::Value| {
            let mut b = vec![1];
            b.extend(serde_json::to_vec(&v).unwrap());
            bin(b)
        };
        let mut columns: Vec<TupleValue> = Column::ALL
            .iter()
            .map(|c| match c {
                Column::Uid => bin(Uuid::from_u128(u128::from(i) + 1).as_bytes().to_vec()),
                Column::Kind => text("Query".into()),
                Column::ApiVersion => text("ark.mckinsey.com/v1alpha1".into()),
                Column::Namespace => text(format!("ns-{}", i % 3)),
                Column::Name => text(format!("query-{i}")),
                Column::ResourceVersion => bin((i as i64 + 1).to_be_bytes().to_vec()),
                Column::Generation => bin(1i64.to_be_bytes().to_vec()),
                Column::Json(JsonColumn::Spec) => jsonb(serde_json::json!({
                    "input": format!("Summarise report {i} and list the three largest changes."),
                    "targets": [{"type": "agent", "name": format!("agent-{}", i % 10)}],
                })),
                Column::Json(JsonColumn::Labels) => {
                    jsonb(serde_json::json!({"agent": format!("agent-{}", i % 10)}))
                }
                Column::Json(_) => TupleValue::Null,
                Column::CreatedAt => bin(800_000_000_000_000i64.to_be_bytes().to_vec()),
                Column::DeletionTimestamp => TupleValue::Null,
            })
            .collect();
        columns.push(TupleValue::Null);
        crate::pgoutput::tests::encode::encode(&Message::Insert(Insert {
            xid: None,
            relation_id: 7,
            new: TupleData { columns },
        }))
    }

    /// A state with a dictionary for Queries and nothing applied.
    struct WithDict(Arc<Dict>);
    impl Known for WithDict {
        fn rv(&self) -> Rv {
            0
        }
        fn by_uid(&self, _: &Uuid) -> Option<Arc<Obj>> {
            None
        }
        fn dict(&self, kind: &str) -> Option<Arc<Dict>> {
            (kind == "Query").then(|| Arc::clone(&self.0))
        }
    }

    fn commit_of(rows: u64, known: &dyn Known) -> Vec<Change> {
        let mut a = Assembler::new();
        a.push(Input::Begin, known).unwrap();
        a.push(Input::Data(relation(7, "resources")), known)
            .unwrap();
        for i in 0..rows {
            a.push(Input::Data(insert(i)), known).unwrap();
        }
        match a.push(Input::Commit { end_lsn: 1 }, known) {
            Ok(Some(Output::Commit { changes, .. })) => changes,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_backfills_rows_past_the_first_thousand_are_built_cold_with_the_same_json() {
        let plain = commit_of(BACKFILL_ROWS as u64 + 300, &Empty);
        assert!(plain.iter().all(|c| !c.object().is_cold()));
        let sample: Vec<Bytes> = plain.iter().map(|c| c.object().json()).collect();
        let dict = Arc::new(Dict::train(sample.iter().map(|b| &b[..])).unwrap());
        let known = WithDict(dict);
        let cold = commit_of(BACKFILL_ROWS as u64 + 300, &known);
        assert_eq!(cold.len(), plain.len());
        for (i, (p, c)) in plain.iter().zip(&cold).enumerate() {
            assert_eq!(c.object().is_cold(), i >= BACKFILL_ROWS, "row {i}");
            assert_eq!(c.object().json(), p.object().json(), "row {i}");
            assert_eq!(
                c.object().labels().collect::<Vec<_>>(),
                p.object().labels().collect::<Vec<_>>()
            );
        }
        // A small transaction stays plain whatever the state has.
        assert!(commit_of(50, &known).iter().all(|c| !c.object().is_cold()));
    }

    proptest! {
        #[test]
        fn any_bytes_are_decoded_or_refused_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = feed(Bytes::from(data));
        }
    }
}
