//! The pgoutput message decoder and the little state it needs.

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorKind};
use super::lsn::{Lsn, PgTimestamp};
use super::message::*;
use super::reader::Reader;

type Result<T> = std::result::Result<T, DecodeError>;

/// The pgoutput `proto_version` the stream was started with. It decides which message
/// types exist and whether streamed blocks carry transaction ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// PostgreSQL 10+: whole transactions, sent at commit.
    V1,
    /// PostgreSQL 14+: adds streaming of in-progress transactions (`streaming 'on'`).
    V2,
    /// PostgreSQL 15+: adds two-phase commit messages (`two_phase 'true'`).
    V3,
    /// PostgreSQL 16+: adds parallel streaming (`streaming 'parallel'`), whose Stream Abort
    /// carries the abort LSN and time.
    V4,
}

impl ProtocolVersion {
    /// The number sent as `proto_version`.
    pub fn number(self) -> u32 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => 2,
            ProtocolVersion::V3 => 3,
            ProtocolVersion::V4 => 4,
        }
    }

    /// Every known version, oldest first.
    pub const ALL: [ProtocolVersion; 4] = [
        ProtocolVersion::V1,
        ProtocolVersion::V2,
        ProtocolVersion::V3,
        ProtocolVersion::V4,
    ];
}

/// Decodes pgoutput messages, one XLogData payload at a time, in stream order.
///
/// The only state is whether the stream is inside a streamed block (between Stream Start
/// and Stream Stop): there, with protocol v2+, Relation, Type, Insert, Update, Delete,
/// Truncate and logical Message carry the transaction id after their type byte, and nothing
/// in the bytes themselves says so. The decoder therefore has to see every message of the
/// stream, in order. A message that fails to decode leaves the state as it was. After a
/// reconnect (a new `START_REPLICATION`), call [`Decoder::reset`] or make a new decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    version: ProtocolVersion,
    parallel_streaming: bool,
    in_stream: bool,
}

impl Decoder {
    /// A decoder for a stream started with this `proto_version`, outside any streamed block,
    /// without `streaming 'parallel'`.
    pub fn new(version: ProtocolVersion) -> Self {
        Decoder {
            version,
            parallel_streaming: false,
            in_stream: false,
        }
    }

    /// Declares that the stream was started with `streaming 'parallel'` (which PostgreSQL
    /// accepts only with protocol v4+). Stream Abort then carries, and must carry, the abort
    /// LSN and time. Ignored below v4.
    pub fn with_parallel_streaming(mut self, parallel: bool) -> Self {
        self.parallel_streaming = parallel && self.version >= ProtocolVersion::V4;
        self
    }

    /// A decoder in a given state (for tests and fuzzing: every state can be reached).
    pub fn with_state(version: ProtocolVersion, parallel_streaming: bool, in_stream: bool) -> Self {
        let mut decoder = Decoder::new(version).with_parallel_streaming(parallel_streaming);
        decoder.in_stream = in_stream;
        decoder
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether the next messages belong to a streamed block.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    pub fn parallel_streaming(&self) -> bool {
        self.parallel_streaming
    }

    /// Forgets the stream state, as after a reconnect.
    pub fn reset(&mut self) {
        self.in_stream = false;
    }

    /// Decodes one message: the whole payload of one XLogData (`w`) CopyData message, or
    /// one row of `pg_logical_slot_{get,peek}_binary_changes`. Column values are zero-copy
    /// slices of `buf`. Every byte must belong to the message.
    pub fn decode(&mut self, buf: Bytes) -> Result<Message> {
        let mut r = Reader::new(buf);
        let tag = r.u8("message type")?;
        self.check_allowed(tag)?;
        let message = self.decode_body(tag, &mut r)?;
        r.finish()?;
        match message {
            Message::StreamStart(_) => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }

    /// Rejects a type byte unknown to this protocol version or impossible in this state.
    fn check_allowed(&self, tag: u8) -> Result<()> {
        let since = match tag {
            b'B' | b'C' | b'O' | b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M' => {
                ProtocolVersion::V1
            }
            b'S' | b'E' | b'c' | b'A' => ProtocolVersion::V2,
            b'b' | b'P' | b'K' | b'r' | b'p' => ProtocolVersion::V3,
            _ => {
                return Err(DecodeError::new(
                    DecodeErrorKind::UnknownMessageType(tag),
                    0,
                ))
            }
        };
        if self.version < since {
            let version = self.version.number();
            let kind = DecodeErrorKind::NotInProtocolVersion { tag, version };
            return Err(DecodeError::new(kind, 0));
        }
        let allowed = match tag {
            // Inside a streamed block only changes (and an Origin) are sent.
            b'B' | b'C' | b'c' | b'A' | b'b' | b'P' | b'K' | b'r' | b'p' | b'S' => !self.in_stream,
            b'E' => self.in_stream,
            _ => true,
        };
        if !allowed {
            let in_stream = self.in_stream;
            let kind = DecodeErrorKind::UnexpectedInStreamState { tag, in_stream };
            return Err(DecodeError::new(kind, 0));
        }
        Ok(())
    }

    /// The transaction id of a data message inside a streamed block (v2+).
    fn stream_xid(&self, r: &mut Reader) -> Result<Option<u32>> {
        if self.in_stream && self.version >= ProtocolVersion::V2 {
            Ok(Some(r.u32("streamed transaction id")?))
        } else {
            Ok(None)
        }
    }

    fn decode_body(&self, tag: u8, r: &mut Reader) -> Result<Message> {
        Ok(match tag {
            b'B' => Message::Begin(Begin {
                final_lsn: lsn(r, "final LSN")?,
                timestamp: timestamp(r, "commit timestamp")?,
                xid: r.u32("xid")?,
            }),
            b'C' => Message::Commit(Commit {
                flags: r.u8("flags")?,
                commit_lsn: lsn(r, "commit LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                timestamp: timestamp(r, "commit timestamp")?,
            }),
            b'O' => Message::Origin(Origin {
                commit_lsn: lsn(r, "origin commit LSN")?,
                name: r.cstr("origin name")?,
            }),
            b'R' => Message::Relation(self.relation(r)?),
            b'Y' => Message::Type(TypeMessage {
                xid: self.stream_xid(r)?,
                id: r.u32("type oid")?,
                namespace: namespace(r)?,
                name: r.cstr("type name")?,
            }),
            b'I' => {
                let xid = self.stream_xid(r)?;
                let relation_id = r.u32("relation id")?;
                expect_marker(r, b'N', "'N'")?;
                Message::Insert(Insert {
                    xid,
                    relation_id,
                    new: tuple(r)?,
                })
            }
            b'U' => Message::Update(self.update(r)?),
            b'D' => {
                let xid = self.stream_xid(r)?;
                let relation_id = r.u32("relation id")?;
                let at = r.pos();
                let old = match r.u8("tuple marker")? {
                    b'K' => OldTuple::Key(tuple(r)?),
                    b'O' => OldTuple::Full(tuple(r)?),
                    found => {
                        return Err(DecodeError::new(
                            DecodeErrorKind::UnexpectedTupleMarker {
                                expected: "'K' or 'O'",
                                found,
                            },
                            at,
                        ))
                    }
                };
                Message::Delete(Delete {
                    xid,
                    relation_id,
                    old,
                })
            }
            b'T' => {
                let xid = self.stream_xid(r)?;
                let count = r.len32("relation count")?;
                let options = r.u8("truncate options")?;
                let mut relation_ids = Vec::with_capacity(count.min(r.remaining() / 4));
                for _ in 0..count {
                    relation_ids.push(r.u32("truncated relation id")?);
                }
                Message::Truncate(Truncate {
                    xid,
                    options,
                    relation_ids,
                })
            }
            b'M' => {
                let xid = self.stream_xid(r)?;
                let flags = r.u8("message flags")?;
                let lsn = lsn(r, "message LSN")?;
                let prefix = r.cstr("message prefix")?;
                let len = r.len32("message content length")?;
                Message::LogicalMessage(LogicalMessage {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content: r.bytes(len, "message content")?,
                })
            }
            b'S' => Message::StreamStart(StreamStart {
                xid: r.u32("xid")?,
                first_segment: r.u8("first segment")? == 1,
            }),
            b'E' => Message::StreamStop,
            b'c' => Message::StreamCommit(StreamCommit {
                xid: r.u32("xid")?,
                flags: r.u8("flags")?,
                commit_lsn: lsn(r, "commit LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                timestamp: timestamp(r, "commit timestamp")?,
            }),
            b'A' => Message::StreamAbort(StreamAbort {
                xid: r.u32("xid")?,
                subxid: r.u32("subtransaction xid")?,
                parallel: if self.parallel_streaming {
                    Some(ParallelAbortInfo {
                        abort_lsn: lsn(r, "abort LSN")?,
                        abort_time: timestamp(r, "abort timestamp")?,
                    })
                } else {
                    None
                },
            }),
            b'b' => Message::BeginPrepare(BeginPrepare {
                prepare_lsn: lsn(r, "prepare LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                timestamp: timestamp(r, "prepare timestamp")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            }),
            b'P' => Message::Prepare(prepare(r)?),
            b'p' => Message::StreamPrepare(prepare(r)?),
            b'K' => Message::CommitPrepared(CommitPrepared {
                flags: r.u8("flags")?,
                commit_lsn: lsn(r, "commit LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                timestamp: timestamp(r, "commit timestamp")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            }),
            b'r' => Message::RollbackPrepared(RollbackPrepared {
                flags: r.u8("flags")?,
                prepare_end_lsn: lsn(r, "prepare end LSN")?,
                rollback_end_lsn: lsn(r, "rollback end LSN")?,
                prepare_time: timestamp(r, "prepare timestamp")?,
                rollback_time: timestamp(r, "rollback timestamp")?,
                xid: r.u32("xid")?,
                gid: r.cstr("gid")?,
            }),
            // check_allowed has rejected every other byte.
            _ => {
                return Err(DecodeError::new(
                    DecodeErrorKind::UnknownMessageType(tag),
                    0,
                ))
            }
        })
    }

    fn relation(&self, r: &mut Reader) -> Result<Relation> {
        let xid = self.stream_xid(r)?;
        let id = r.u32("relation id")?;
        let namespace = namespace(r)?;
        let name = r.cstr("relation name")?;
        let at = r.pos();
        let identity = r.u8("replica identity")?;
        let replica_identity = ReplicaIdentity::from_byte(identity).ok_or_else(|| {
            DecodeError::new(DecodeErrorKind::UnknownReplicaIdentity(identity), at)
        })?;
        let count = usize::from(r.u16("column count")?);
        // A column takes at least 10 bytes (flags, empty name's NUL, oid, typmod).
        let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
        for _ in 0..count {
            columns.push(Column {
                flags: r.u8("column flags")?,
                name: r.cstr("column name")?,
                type_oid: r.u32("column type oid")?,
                type_modifier: r.i32("column type modifier")?,
            });
        }
        Ok(Relation {
            xid,
            id,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn update(&self, r: &mut Reader) -> Result<Update> {
        let xid = self.stream_xid(r)?;
        let relation_id = r.u32("relation id")?;
        let at = r.pos();
        let (old, new) = match r.u8("tuple marker")? {
            marker @ (b'K' | b'O') => {
                let old_tuple = tuple(r)?;
                let new_at = r.pos();
                expect_marker(r, b'N', "'N'")?;
                let new = tuple(r)?;
                if old_tuple.columns.len() != new.columns.len() {
                    return Err(DecodeError::new(
                        DecodeErrorKind::CountMismatch {
                            field: "new tuple column count (must match the old tuple)",
                            expected: old_tuple.columns.len(),
                            found: new.columns.len(),
                        },
                        new_at,
                    ));
                }
                let old = if marker == b'K' {
                    OldTuple::Key(old_tuple)
                } else {
                    OldTuple::Full(old_tuple)
                };
                (Some(old), new)
            }
            b'N' => (None, tuple(r)?),
            found => {
                return Err(DecodeError::new(
                    DecodeErrorKind::UnexpectedTupleMarker {
                        expected: "'K', 'O' or 'N'",
                        found,
                    },
                    at,
                ))
            }
        };
        Ok(Update {
            xid,
            relation_id,
            old,
            new,
        })
    }
}

fn lsn(r: &mut Reader, field: &'static str) -> Result<Lsn> {
    r.u64(field).map(Lsn)
}

fn timestamp(r: &mut Reader, field: &'static str) -> Result<PgTimestamp> {
    r.i64(field).map(PgTimestamp)
}

fn namespace(r: &mut Reader) -> Result<String> {
    let ns = r.cstr("namespace")?;
    Ok(if ns.is_empty() {
        "pg_catalog".to_owned()
    } else {
        ns
    })
}

fn expect_marker(r: &mut Reader, marker: u8, expected: &'static str) -> Result<()> {
    let at = r.pos();
    let found = r.u8("tuple marker")?;
    if found == marker {
        Ok(())
    } else {
        Err(DecodeError::new(
            DecodeErrorKind::UnexpectedTupleMarker { expected, found },
            at,
        ))
    }
}

fn prepare(r: &mut Reader) -> Result<Prepare> {
    Ok(Prepare {
        flags: r.u8("flags")?,
        prepare_lsn: lsn(r, "prepare LSN")?,
        end_lsn: lsn(r, "end LSN")?,
        timestamp: timestamp(r, "prepare timestamp")?,
        xid: r.u32("xid")?,
        gid: r.cstr("gid")?,
    })
}

/// TupleData: an Int16 column count, then per column a kind byte and, for `t` and `b`, an
/// Int32 length and the value.
fn tuple(r: &mut Reader) -> Result<TupleData> {
    let count = usize::from(r.u16("tuple column count")?);
    // Each column takes at least its kind byte.
    let mut columns = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let at = r.pos();
        let value = match r.u8("tuple column kind")? {
            b'n' => TupleValue::Null,
            b'u' => TupleValue::UnchangedToast,
            b't' => {
                let len = r.len32("text value length")?;
                TupleValue::Text(r.bytes(len, "text value")?)
            }
            b'b' => {
                let len = r.len32("binary value length")?;
                TupleValue::Binary(r.bytes(len, "binary value")?)
            }
            kind => {
                return Err(DecodeError::new(
                    DecodeErrorKind::UnknownTupleKind(kind),
                    at,
                ))
            }
        };
        columns.push(value);
    }
    Ok(TupleData { columns })
}
