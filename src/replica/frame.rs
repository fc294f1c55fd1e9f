//! The internal stream's wire format: one JSON object per line. Pure: entries to bytes and
//! lines back to entries.
//!
//! ```text
//! {"commit":{"rv":12,"lsn":"0/16B3748","at":1764680000123456,"changes":[{"put":{...}},{"delete":{...}}]}}
//! {"progress":{"rv":12,"lsn":"0/16B37A0","at":1764680000124000}}
//! {"reseed":{"rv":40,"lsn":"0/16B4000"}}
//! ```
//!
//! Objects are written as the state holds them (the bytes a GET returns), so a follower's
//! objects are byte for byte the leader's. `at` is the leader's clock when it relayed the
//! entry, in microseconds since the Unix epoch: followers report their lag from it.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;

use super::log::Entry;
use crate::pgoutput::Lsn;
use crate::watch::{Change, Obj, Rv};

/// A line that is not a frame this binary understands.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed internal stream frame: {0}")]
pub struct FrameError(pub String);

/// An entry as a follower receives it, with the leader's clock.
#[derive(Debug, Clone)]
pub struct Received {
    pub entry: Entry,
    /// Microseconds since the Unix epoch on the leader (absent on reseeds).
    pub at_micros: Option<i64>,
}

/// One line for `entry`, relayed at `at_micros`.
pub fn encode(entry: &Entry, at_micros: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(128);
    match entry {
        Entry::Commit { rv, lsn, changes } => {
            let size: usize = changes.iter().map(|c| c.object().json_len() + 12).sum();
            b.reserve(size);
            b.put_slice(
                format!(
                    "{{\"commit\":{{\"rv\":{rv},\"lsn\":\"{}\",\"at\":{at_micros},\"changes\":[",
                    Lsn(*lsn)
                )
                .as_bytes(),
            );
            for (i, c) in changes.iter().enumerate() {
                if i > 0 {
                    b.put_u8(b',');
                }
                b.put_slice(match c {
                    Change::Put(_) => b"{\"put\":",
                    Change::Delete(_) => b"{\"delete\":",
                });
                c.object().with_json(|j| b.put_slice(j));
                b.put_u8(b'}');
            }
            b.put_slice(b"]}}\n");
        }
        Entry::Progress { rv, lsn } => b.put_slice(
            format!(
                "{{\"progress\":{{\"rv\":{rv},\"lsn\":\"{}\",\"at\":{at_micros}}}}}\n",
                Lsn(*lsn)
            )
            .as_bytes(),
        ),
        Entry::Reseed { rv, lsn } => b.put_slice(
            format!("{{\"reseed\":{{\"rv\":{rv},\"lsn\":\"{}\"}}}}\n", Lsn(*lsn)).as_bytes(),
        ),
    }
    b.freeze()
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Wire {
    Commit {
        rv: Rv,
        lsn: String,
        at: i64,
        changes: Vec<WireChange>,
    },
    Progress {
        rv: Rv,
        lsn: String,
        at: i64,
    },
    Reseed {
        rv: Rv,
        lsn: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum WireChange {
    Put(Value),
    Delete(Value),
}

fn lsn(s: &str) -> Result<u64, FrameError> {
    s.parse::<Lsn>()
        .map(|l| l.0)
        .map_err(|_| FrameError(format!("{s:?} is not an LSN")))
}

/// Decodes one line (without its newline).
pub fn decode(line: &[u8]) -> Result<Received, FrameError> {
    let wire: Wire = serde_json::from_slice(line).map_err(|e| FrameError(e.to_string()))?;
    Ok(match wire {
        Wire::Commit {
            rv,
            lsn: l,
            at,
            changes,
        } => {
            let changes = changes
                .into_iter()
                .map(|c| {
                    let (value, put) = match c {
                        WireChange::Put(v) => (v, true),
                        WireChange::Delete(v) => (v, false),
                    };
                    let obj = Arc::new(
                        Obj::try_new(value).map_err(|e| FrameError(format!("an object: {e}")))?,
                    );
                    Ok(if put {
                        Change::Put(obj)
                    } else {
                        Change::Delete(obj)
                    })
                })
                .collect::<Result<Vec<_>, FrameError>>()?;
            Received {
                entry: Entry::Commit {
                    rv,
                    lsn: lsn(&l)?,
                    changes: Arc::new(changes),
                },
                at_micros: Some(at),
            }
        }
        Wire::Progress { rv, lsn: l, at } => Received {
            entry: Entry::Progress { rv, lsn: lsn(&l)? },
            at_micros: Some(at),
        },
        Wire::Reseed { rv, lsn: l } => Received {
            entry: Entry::Reseed { rv, lsn: lsn(&l)? },
            at_micros: None,
        },
    })
}

/// Splits a byte stream into lines: bytes in as they arrive, whole lines out.
#[derive(Default)]
pub struct Lines {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline: a long line arriving in many chunks
    /// is scanned once, not once per chunk.
    scanned: usize,
}

impl Lines {
    /// The longest line accepted. One line is one transaction, so the bound is on the
    /// memory a single transaction may take, not on how many changes it has.
    pub const MAX_LINE: usize = 1 << 30;

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + i;
            let line = self.buf.split_to(end + 1).freeze();
            out.push(line.slice(..end));
            self.scanned = 0;
        }
        self.scanned = self.buf.len();
        if self.buf.len() > Self::MAX_LINE {
            return Err(FrameError(format!(
                "a line longer than {} bytes",
                Self::MAX_LINE
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, rv: u64) -> Arc<Obj> {
        Arc::new(Obj::new(json!({
            "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"), "resourceVersion": rv.to_string()},
            "spec": {"prompt": "line\nbreak \"quoted\""}
        })))
    }

    #[test]
    fn entries_round_trip_with_objects_byte_for_byte() {
        let a = obj("a", 5);
        let b = obj("b", 6);
        let entries = [
            Entry::Commit {
                rv: 6,
                lsn: 0x1_0000_00A0,
                changes: Arc::new(vec![Change::Put(a.clone()), Change::Delete(b.clone())]),
            },
            Entry::Progress { rv: 6, lsn: 0xB0 },
            Entry::Reseed { rv: 9, lsn: 0xC0 },
        ];
        let mut lines = Lines::default();
        let mut wire = Vec::new();
        for e in &entries {
            wire.extend_from_slice(&encode(e, 1_764_680_000_000_000));
        }
        // Delivered in awkward pieces, as TCP may.
        let mut got = Vec::new();
        for piece in wire.chunks(7) {
            got.extend(lines.push(piece).unwrap());
        }
        assert_eq!(got.len(), 3);
        let decoded: Vec<Received> = got.iter().map(|l| decode(l).unwrap()).collect();
        match &decoded[0].entry {
            Entry::Commit { rv, lsn, changes } => {
                assert_eq!((*rv, *lsn), (6, 0x1_0000_00A0));
                assert!(matches!(&changes[0], Change::Put(o) if o.json() == a.json()));
                assert!(matches!(&changes[1], Change::Delete(o) if o.json() == b.json()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decoded[0].at_micros, Some(1_764_680_000_000_000));
        assert!(matches!(
            decoded[1].entry,
            Entry::Progress { rv: 6, lsn: 0xB0 }
        ));
        assert!(matches!(
            decoded[2].entry,
            Entry::Reseed { rv: 9, lsn: 0xC0 }
        ));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{}",
            b"{\"commit\":{}}",
            b"{\"progress\":{\"rv\":1,\"lsn\":\"nope\",\"at\":0}}",
            b"{\"commit\":{\"rv\":1,\"lsn\":\"0/1\",\"at\":0,\"changes\":[{\"put\":{\"kind\":\"Agent\"}}]}}",
            b"{\"other\":1}",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
