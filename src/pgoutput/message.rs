//! The typed pgoutput messages the decoder produces.
//!
//! Field names follow PostgreSQL's documentation ("Logical Replication Message Formats").
//! `xid: Option<u32>` on data messages is the transaction id that protocol v2+ puts after
//! the type byte inside a streamed block (between Stream Start and Stream Stop); it is
//! `None` everywhere else.

use bytes::Bytes;

use super::lsn::{Lsn, PgTimestamp};

/// A PostgreSQL object id (relation or type).
pub type Oid = u32;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`: a (non-streamed) transaction starts.
    Begin(Begin),
    /// `C`: the transaction opened by the last Begin commits.
    Commit(Commit),
    /// `O`: the changes that follow came from another node (replication origin).
    Origin(Origin),
    /// `R`: a table's description; sent before its first change and again after DDL.
    Relation(Relation),
    /// `Y`: a non-built-in type's name.
    Type(TypeMessage),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: one or more tables were truncated.
    Truncate(Truncate),
    /// `M`: a message written with `pg_logical_emit_message` (only with `messages 'true'`).
    LogicalMessage(LogicalMessage),
    /// `S` (v2+): a block of changes of an in-progress transaction starts.
    StreamStart(StreamStart),
    /// `E` (v2+): the streamed block ends.
    StreamStop,
    /// `c` (v2+): a streamed transaction commits.
    StreamCommit(StreamCommit),
    /// `A` (v2+): a streamed (sub)transaction aborts.
    StreamAbort(StreamAbort),
    /// `b` (v3+, two_phase): a prepared transaction's changes start.
    BeginPrepare(BeginPrepare),
    /// `P` (v3+, two_phase): the transaction opened by Begin Prepare is prepared.
    Prepare(Prepare),
    /// `K` (v3+, two_phase): a prepared transaction commits.
    CommitPrepared(CommitPrepared),
    /// `r` (v3+, two_phase): a prepared transaction is rolled back.
    RollbackPrepared(RollbackPrepared),
    /// `p` (v3+, two_phase with streaming): a streamed transaction is prepared.
    StreamPrepare(Prepare),
}

impl Message {
    /// The type byte this message is sent with.
    pub fn tag(&self) -> u8 {
        match self {
            Message::Begin(_) => b'B',
            Message::Commit(_) => b'C',
            Message::Origin(_) => b'O',
            Message::Relation(_) => b'R',
            Message::Type(_) => b'Y',
            Message::Insert(_) => b'I',
            Message::Update(_) => b'U',
            Message::Delete(_) => b'D',
            Message::Truncate(_) => b'T',
            Message::LogicalMessage(_) => b'M',
            Message::StreamStart(_) => b'S',
            Message::StreamStop => b'E',
            Message::StreamCommit(_) => b'c',
            Message::StreamAbort(_) => b'A',
            Message::BeginPrepare(_) => b'b',
            Message::Prepare(_) => b'P',
            Message::CommitPrepared(_) => b'K',
            Message::RollbackPrepared(_) => b'r',
            Message::StreamPrepare(_) => b'p',
        }
    }
}

/// `B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time.
    pub timestamp: PgTimestamp,
    pub xid: u32,
}

/// `C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Currently always 0.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record: the position to confirm once the transaction is applied.
    pub end_lsn: Lsn,
    pub timestamp: PgTimestamp,
}

/// `O`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    pub name: String,
}

/// A table's replica identity setting (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// The byte PostgreSQL sends for it.
    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }

    /// The setting for a byte, if it is one PostgreSQL sends.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

/// `R`. The column list covers the published columns in table order, without dropped and
/// (unless published) generated columns; tuples of this relation have exactly these columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub xid: Option<u32>,
    pub id: Oid,
    /// The schema; PostgreSQL sends an empty string for `pg_catalog`, which is decoded as
    /// `"pg_catalog"` (as PostgreSQL's own reader does).
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Bit 0 ([`Column::KEY_FLAG`]): part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: Oid,
    /// `atttypmod` (-1 when the type has none).
    pub type_modifier: i32,
}

impl Column {
    /// The flag bit marking a replica identity (key) column.
    pub const KEY_FLAG: u8 = 1;

    /// Whether the column is part of the replica identity (with `FULL`, every column is).
    pub fn is_key(&self) -> bool {
        self.flags & Self::KEY_FLAG != 0
    }
}

/// `Y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    pub xid: Option<u32>,
    pub id: Oid,
    /// As for [`Relation::namespace`], empty on the wire means `pg_catalog`.
    pub namespace: String,
    pub name: String,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that PostgreSQL did not send. The value is whatever the
    /// row held before the update: take it from the consumer's previous copy of the row (or
    /// from the old tuple under `REPLICA IDENTITY FULL`).
    UnchangedToast,
    /// `t`: the value in text format (a zero-copy slice of the input).
    Text(Bytes),
    /// `b`: the value in binary format (only with the `binary 'true'` option).
    Binary(Bytes),
}

impl TupleValue {
    /// The text value as `&str`: `None` unless this is [`TupleValue::Text`] holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TupleValue::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// The column values of one row, in the column order of its [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TupleData {
    pub columns: Vec<TupleValue>,
}

impl TupleData {
    /// Whether any column is [`TupleValue::UnchangedToast`].
    pub fn has_unchanged_toast(&self) -> bool {
        self.columns
            .iter()
            .any(|v| matches!(v, TupleValue::UnchangedToast))
    }

    /// Replaces every [`TupleValue::UnchangedToast`] column with the same column of
    /// `previous` (the consumer's last copy of the row, or an Update's full old tuple).
    /// Columns that are unchanged in `previous` too stay unchanged. Returns the number of
    /// columns still unchanged afterwards, or an error when the column counts differ.
    pub fn fill_unchanged_from(
        &mut self,
        previous: &TupleData,
    ) -> Result<usize, super::relation::RelationError> {
        if previous.columns.len() != self.columns.len() {
            return Err(super::relation::RelationError::ColumnCountMismatch {
                relation_id: None,
                expected: self.columns.len(),
                found: previous.columns.len(),
            });
        }
        let mut still_unchanged = 0usize;
        for (value, old) in self.columns.iter_mut().zip(&previous.columns) {
            if matches!(value, TupleValue::UnchangedToast) {
                *value = old.clone();
                if matches!(value, TupleValue::UnchangedToast) {
                    still_unchanged = still_unchanged.saturating_add(1);
                }
            }
        }
        Ok(still_unchanged)
    }
}

/// `I`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub xid: Option<u32>,
    pub relation_id: Oid,
    pub new: TupleData,
}

/// The old row image of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity key columns (other columns are sent as null).
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// `U`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub xid: Option<u32>,
    pub relation_id: Oid,
    /// Present when the key changed (`K`) or with `REPLICA IDENTITY FULL` (`O`).
    pub old: Option<OldTuple>,
    pub new: TupleData,
}

/// `D`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub xid: Option<u32>,
    pub relation_id: Oid,
    pub old: OldTuple,
}

/// `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub xid: Option<u32>,
    /// Bit 0: `CASCADE`; bit 1: `RESTART IDENTITY`.
    pub options: u8,
    pub relation_ids: Vec<Oid>,
}

impl Truncate {
    /// `TRUNCATE ... CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE ... RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `M`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    pub xid: Option<u32>,
    /// Bit 0: transactional.
    pub flags: u8,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Bytes,
}

impl LogicalMessage {
    /// Whether the message was emitted transactionally (inside Begin..Commit).
    pub fn is_transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `S`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: u32,
    /// The first block of this transaction (the byte was 1).
    pub first_segment: bool,
}

/// `c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: u32,
    /// Currently always 0.
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub timestamp: PgTimestamp,
}

/// `A`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level transaction.
    pub xid: u32,
    /// The aborted subtransaction; equal to `xid` when the whole transaction aborted.
    pub subxid: u32,
    /// Sent only with protocol v4 and `streaming 'parallel'`.
    pub parallel: Option<ParallelAbortInfo>,
}

/// The v4 fields of a Stream Abort under `streaming 'parallel'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelAbortInfo {
    pub abort_lsn: Lsn,
    pub abort_time: PgTimestamp,
}

/// `b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    pub prepare_lsn: Lsn,
    pub end_lsn: Lsn,
    pub timestamp: PgTimestamp,
    pub xid: u32,
    /// The global transaction id given to `PREPARE TRANSACTION`.
    pub gid: String,
}

/// `P` and `p` (Stream Prepare has the same layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Currently always 0.
    pub flags: u8,
    pub prepare_lsn: Lsn,
    pub end_lsn: Lsn,
    pub timestamp: PgTimestamp,
    pub xid: u32,
    pub gid: String,
}

/// `K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Currently always 0.
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub timestamp: PgTimestamp,
    pub xid: u32,
    pub gid: String,
}

/// `r`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Currently always 0.
    pub flags: u8,
    pub prepare_end_lsn: Lsn,
    pub rollback_end_lsn: Lsn,
    pub prepare_time: PgTimestamp,
    pub rollback_time: PgTimestamp,
    pub xid: u32,
    pub gid: String,
}
