//! The physical replication protocol around pgoutput: the CopyData payloads a walsender
//! sends during `START_REPLICATION` (XLogData `w`, Primary Keepalive `k`) and the Standby
//! Status Update (`r`) the client sends back.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, DecodeErrorKind};
use super::lsn::{Lsn, PgTimestamp};
use super::reader::Reader;

/// One CopyData payload from the server during replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`: WAL data; for logical replication, exactly one pgoutput message.
    XLogData(XLogData),
    /// `k`: a heartbeat, possibly asking for an immediate status update.
    PrimaryKeepalive(PrimaryKeepalive),
}

/// `w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// The WAL position of the start of `data` (for logical replication, the LSN of the
    /// change; 0/0 for some messages).
    pub wal_start: Lsn,
    /// The current end of WAL on the server.
    pub wal_end: Lsn,
    /// The server's clock when it sent the message.
    pub server_time: PgTimestamp,
    /// The payload: feed it to [`super::Decoder::decode`]. A zero-copy slice of the input.
    pub data: Bytes,
}

/// `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The current end of WAL on the server.
    pub wal_end: Lsn,
    pub server_time: PgTimestamp,
    /// The server will disconnect after `wal_sender_timeout` unless a status update comes
    /// soon: reply at once.
    pub reply_requested: bool,
}

impl ReplicationMessage {
    /// Decodes one CopyData payload (without the CopyData `d` header and length).
    pub fn decode(buf: Bytes) -> Result<ReplicationMessage, DecodeError> {
        let mut r = Reader::new(buf);
        let tag = r.u8("replication message type")?;
        let message = match tag {
            b'w' => ReplicationMessage::XLogData(XLogData {
                wal_start: Lsn(r.u64("WAL start")?),
                wal_end: Lsn(r.u64("WAL end")?),
                server_time: PgTimestamp(r.i64("server clock")?),
                data: r.rest(),
            }),
            b'k' => ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(r.u64("WAL end")?),
                server_time: PgTimestamp(r.i64("server clock")?),
                reply_requested: r.u8("reply requested")? != 0,
            }),
            _ => {
                return Err(DecodeError::new(
                    DecodeErrorKind::UnknownMessageType(tag),
                    0,
                ))
            }
        };
        r.finish()?;
        Ok(message)
    }
}

/// `r`: the client's progress report. `flushed` is what the server may discard: a logical
/// slot's `confirmed_flush_lsn` advances to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// The WAL position received and written (1 byte past the last byte).
    pub written: Lsn,
    /// The WAL position durably processed: the slot may advance to here.
    pub flushed: Lsn,
    /// The WAL position applied.
    pub applied: Lsn,
    /// The client's clock (see [`PgTimestamp::from_system_time`]).
    pub client_time: PgTimestamp,
    /// Ask the server to reply with a keepalive at once.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// The encoded length: type byte, four Int64, reply byte.
    pub const LEN: usize = 34;

    /// Appends the CopyData payload (without the CopyData header) to `buf`.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        buf.reserve(Self::LEN);
        buf.put_u8(b'r');
        buf.put_u64(self.written.0);
        buf.put_u64(self.flushed.0);
        buf.put_u64(self.applied.0);
        buf.put_i64(self.client_time.0);
        buf.put_u8(u8::from(self.reply_requested));
    }

    /// The CopyData payload (without the CopyData header).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(Self::LEN);
        self.encode_into(&mut buf);
        buf.freeze()
    }
}
