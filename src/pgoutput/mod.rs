//! A sans-IO decoder for PostgreSQL's logical replication output plugin `pgoutput`.
//!
//! # Why sans-IO
//!
//! This module turns bytes into typed messages and nothing else: it opens no connection,
//! runs no SQL, spawns no task and reads no clock. The replication connection (TLS,
//! authentication, `START_REPLICATION`, CopyBoth, reconnects, acknowledgement policy) lives
//! in the `cdc` module, which feeds each CopyData payload in here and acts on what comes
//! out. Keeping the two apart means:
//!
//! - the byte layouts are tested exhaustively with hand-built buffers, property tests,
//!   captured real PostgreSQL output and a fuzzer, none of which needs a server;
//! - the decoder does not care which transport carried the bytes (a walsender connection,
//!   `pg_logical_slot_peek_binary_changes`, a file of captured messages);
//! - a malformed or hostile byte string can only produce a [`DecodeError`], never a panic,
//!   an out-of-bounds read or an allocation sized by an untrusted length field.
//!
//! # Layers
//!
//! 1. [`ReplicationMessage::decode`] reads one CopyData payload from the walsender: an
//!    [`XLogData`] (`w`) whose `data` is one pgoutput message, or a [`PrimaryKeepalive`]
//!    (`k`). [`StandbyStatusUpdate::encode`] builds the `r` reply.
//! 2. [`Decoder::decode`] reads one pgoutput message into a [`Message`]. The decoder tracks
//!    one bit of state, whether it is inside a streamed block (Stream Start .. Stream Stop),
//!    because in protocol v2+ the data messages there carry a transaction id after their
//!    type byte. Feed it every message, in order.
//! 3. [`RelationCache`] remembers the latest [`Relation`] per id (PostgreSQL re-sends it
//!    after ALTER TABLE) and pairs tuple values with column names.
//!
//! Column values are zero-copy [`bytes::Bytes`] slices of the input buffer, so a multi-MB
//! jsonb value is never copied. An unchanged TOASTed value that the server did not send is
//! [`TupleValue::UnchangedToast`]: fill it from the previous copy of the row
//! ([`TupleData::fill_unchanged_from`]).
//!
//! Error offsets count from the start of the buffer given to the function that failed.
//!
//! # What the server uses
//!
//! The server speaks protocol v1 over pgwire-replication, which does the CopyData framing,
//! keepalives and status updates itself and hands over each pgoutput message. Of this
//! module, `cdc` uses [`Decoder`] with [`ProtocolVersion::V1`], the [`Message`] variants
//! Relation, Insert, Update, Delete and Truncate, [`TupleData`]/[`TupleValue`] and [`Lsn`];
//! `cdc::rows` keeps its own column layout instead of [`RelationCache`], and fills TOASTed
//! values from its own previous image. Not used by the server, and kept on purpose, tested
//! and fuzzed like the rest: the framing layer ([`ReplicationMessage`],
//! [`StandbyStatusUpdate`]), used by the fuzz target and for reading captured streams; and
//! the streamed (v2), two-phase (v3) and parallel-streaming (v4) messages, which streaming
//! of large in-progress transactions needs once the transport can request protocol v2.
//! The load generator's raw-decoding baseline uses [`RelationCache`].

#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

mod decode;
mod error;
mod framing;
mod lsn;
mod message;
mod reader;
mod relation;

#[cfg(test)]
pub(crate) mod tests;

pub use decode::{Decoder, ProtocolVersion};
pub use error::{DecodeError, DecodeErrorKind};
pub use framing::{PrimaryKeepalive, ReplicationMessage, StandbyStatusUpdate, XLogData};
pub use lsn::{Lsn, ParseLsnError, PgTimestamp, PG_EPOCH_OFFSET_MICROS};
pub use message::{
    Begin, BeginPrepare, Column, Commit, CommitPrepared, Delete, Insert, LogicalMessage, Message,
    Oid, OldTuple, Origin, ParallelAbortInfo, Prepare, Relation, ReplicaIdentity, RollbackPrepared,
    StreamAbort, StreamCommit, StreamStart, Truncate, TupleData, TupleValue, TypeMessage, Update,
};
pub use relation::{NamedValue, RelationCache, RelationError};
