//! Decoding errors: what went wrong and at which byte.

use std::fmt;

/// A message that could not be decoded.
///
/// `offset` counts bytes from the start of the buffer handed to the decoding function
/// (for pgoutput messages, the XLogData payload, whose first byte is the message type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// Where: the offset of the field that could not be read.
    pub offset: usize,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        DecodeError { kind, offset }
    }
}

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a field: `needed` more bytes were required for `field`, only
    /// `available` were left.
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    /// A NUL-terminated string (`field`) has no terminating NUL before the end of the input.
    UnterminatedString { field: &'static str },
    /// A name or other string field is not valid UTF-8.
    InvalidUtf8 { field: &'static str },
    /// The first byte is not a known message type (pgoutput, or XLogData/keepalive framing).
    UnknownMessageType(u8),
    /// The message type exists, but not in the protocol version the decoder was built for
    /// (streaming needs version 2, two-phase messages version 3).
    NotInProtocolVersion { tag: u8, version: u32 },
    /// A message arrived in a stream state where PostgreSQL never sends it: Stream Start
    /// inside a streamed block, Stream Stop outside one, or a transaction boundary message
    /// (Begin, Commit, Stream Commit, ...) between Stream Start and Stream Stop.
    UnexpectedInStreamState { tag: u8, in_stream: bool },
    /// A tuple column's kind byte is none of `n`, `u`, `t`, `b`.
    UnknownTupleKind(u8),
    /// Update/Delete: a tuple marker byte (`N`, `K`, `O`) was expected, `found` came.
    UnexpectedTupleMarker { expected: &'static str, found: u8 },
    /// A Relation's replica identity byte is none of `d`, `n`, `f`, `i`.
    UnknownReplicaIdentity(u8),
    /// A length or count field is negative.
    NegativeLength { field: &'static str, value: i32 },
    /// Two counts that must agree do not (an Update's old and new tuples have different
    /// column counts).
    CountMismatch {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    /// The message was complete but `count` bytes were left after it.
    TrailingBytes { count: usize },
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated {
                field,
                needed,
                available,
            } => write!(
                f,
                "input truncated in {field}: needed {needed} bytes, {available} left"
            ),
            DecodeErrorKind::UnterminatedString { field } => {
                write!(f, "string {field} has no terminating NUL")
            }
            DecodeErrorKind::InvalidUtf8 { field } => write!(f, "{field} is not valid UTF-8"),
            DecodeErrorKind::UnknownMessageType(tag) => {
                write!(f, "unknown message type {}", show_byte(*tag))
            }
            DecodeErrorKind::NotInProtocolVersion { tag, version } => write!(
                f,
                "message type {} is not part of protocol version {version}",
                show_byte(*tag)
            ),
            DecodeErrorKind::UnexpectedInStreamState { tag, in_stream } => write!(
                f,
                "message type {} is not expected {} a streamed block",
                show_byte(*tag),
                if *in_stream { "inside" } else { "outside" }
            ),
            DecodeErrorKind::UnknownTupleKind(kind) => {
                write!(f, "unknown tuple column kind {}", show_byte(*kind))
            }
            DecodeErrorKind::UnexpectedTupleMarker { expected, found } => write!(
                f,
                "expected tuple marker {expected}, found {}",
                show_byte(*found)
            ),
            DecodeErrorKind::UnknownReplicaIdentity(b) => {
                write!(f, "unknown replica identity {}", show_byte(*b))
            }
            DecodeErrorKind::NegativeLength { field, value } => {
                write!(f, "{field} is negative ({value})")
            }
            DecodeErrorKind::CountMismatch {
                field,
                expected,
                found,
            } => write!(f, "{field}: expected {expected}, found {found}"),
            DecodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the message")
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// A byte as `'c'` when printable ASCII, else as `0xNN`.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("0x{b:02X}")
    }
}
