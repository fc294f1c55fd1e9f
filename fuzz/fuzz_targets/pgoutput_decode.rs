//! Feeds arbitrary bytes to the pgoutput decoder in every state and to the replication
//! framing decoder. Any panic is a bug: the decoders must answer every input with a value
//! or a `DecodeError`.
//!
//! Input layout: byte 0 picks the state of a long-lived decoder (bits 0-1 the protocol
//! version, bit 2 parallel streaming, bit 3 inside a streamed block); the rest is decoded
//! whole in every state, then split into messages (u16 big-endian length, then that many
//! bytes) fed in order to the long-lived decoder, so state transitions get exercised too.
#![no_main]

// The decoder is compiled straight from its source: it needs only `bytes`, so the fuzz
// build skips the server's dependencies (and takes seconds, not minutes, in CI).
#[path = "../../src/pgoutput/mod.rs"]
#[allow(dead_code, unused_imports)]
mod pgoutput;

use pgoutput::{Decoder, Message, ProtocolVersion, RelationCache, ReplicationMessage};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn every_state() -> impl Iterator<Item = Decoder> {
    ProtocolVersion::ALL.into_iter().flat_map(|version| {
        [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .map(move |(parallel, in_stream)| Decoder::with_state(version, parallel, in_stream))
    })
}

/// Decodes `bytes` with `decoder`; a failure must leave the state unchanged.
fn decode_checked(decoder: &mut Decoder, bytes: Bytes, cache: &mut RelationCache) {
    let before = decoder.clone();
    match decoder.decode(bytes) {
        Ok(message) => {
            cache.observe(&message);
            let (relation_id, tuple) = match &message {
                Message::Insert(m) => (m.relation_id, &m.new),
                Message::Update(m) => (m.relation_id, &m.new),
                Message::Delete(m) => (m.relation_id, m.old.tuple()),
                _ => return,
            };
            let _ = cache.named(relation_id, tuple);
        }
        Err(error) => {
            let _ = error.to_string();
            assert_eq!(*decoder, before, "a failed decode changed the decoder state");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let whole = Bytes::copy_from_slice(rest);
    let mut cache = RelationCache::new();

    for mut decoder in every_state() {
        decode_checked(&mut decoder, whole.clone(), &mut cache);
    }

    match ReplicationMessage::decode(whole.clone()) {
        Ok(ReplicationMessage::XLogData(xlog)) => {
            for mut decoder in every_state() {
                decode_checked(&mut decoder, xlog.data.clone(), &mut cache);
            }
        }
        Ok(ReplicationMessage::PrimaryKeepalive(_)) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }

    let version = ProtocolVersion::ALL[usize::from(selector & 3)];
    let mut decoder = Decoder::with_state(version, selector & 4 != 0, selector & 8 != 0);
    let mut at = 0usize;
    while let Some(header) = rest.get(at..at + 2) {
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        let start = at + 2;
        let end = (start + len).min(rest.len());
        decode_checked(&mut decoder, whole.slice(start..end), &mut cache);
        at = end;
    }
});
