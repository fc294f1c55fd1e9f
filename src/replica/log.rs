//! The relay log: the committed transactions this replica applied, whole and in commit
//! order, for followers to read. Pure: no I/O; the writer is the one consumer
//! (`cdc::consume`), readers are cursors that copy entries out at their own pace.
//!
//! The watch history is kept per kind and so loses transaction boundaries; a follower must
//! apply exactly the transactions the leader applied, so this log keeps them as they were.
//! Every replica keeps one, leader or follower, so a follower that takes over the slot can
//! serve the others from where each of them is.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::watch::{Change, Rv};

/// One entry, as the leader relays it.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A transaction that changed objects; `rv` is the state's resourceVersion after it.
    Commit {
        rv: Rv,
        lsn: u64,
        changes: Arc<Vec<Change>>,
    },
    /// Everything up to `lsn` is applied and the state is at `rv` (a commit that changed
    /// nothing, a read point, a heartbeat, a keepalive).
    Progress { rv: Rv, lsn: u64 },
    /// The state was re-seeded from the table at `rv` after the commit at `lsn`: a reader
    /// must re-seed too (its watches get 410, as the leader's did).
    Reseed { rv: Rv, lsn: u64 },
}

impl Entry {
    pub fn lsn(&self) -> u64 {
        match self {
            Entry::Commit { lsn, .. } | Entry::Progress { lsn, .. } | Entry::Reseed { lsn, .. } => {
                *lsn
            }
        }
    }
    pub fn rv(&self) -> Rv {
        match self {
            Entry::Commit { rv, .. } | Entry::Progress { rv, .. } | Entry::Reseed { rv, .. } => *rv,
        }
    }
}

/// How much the log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_entries: usize,
    pub max_age: Duration,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_entries: crate::config::defaults::WATCH_HISTORY_EVENTS,
            max_age: crate::config::defaults::WATCH_HISTORY,
        }
    }
}

/// Where a reader asked to start cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The entries after `requested` are no longer held (or were never: the log starts at
    /// a seed after it). The reader re-seeds from the table.
    Gone { requested: Rv, oldest: Rv },
    /// The log has not reached `requested` yet (a reader that seeded from the table ahead
    /// of this replica): try again shortly.
    TooNew { requested: Rv, current: Rv },
}

struct Held {
    seq: u64,
    at: Instant,
    entry: Entry,
}

struct Inner {
    entries: VecDeque<Held>,
    /// The rv the first held entry follows: a reader at or above it can be served.
    base_rv: Rv,
    /// The state's rv after the last entry (or the base when empty).
    rv: Rv,
    /// The WAL position of the last entry that had one.
    lsn: u64,
    next_seq: u64,
    /// The newest sequence number dropped by trimming or a re-seed: a reader positioned
    /// before it missed entries. (A progress entry replaced by a newer one is not
    /// dropped in this sense: a reader that never saw it lost nothing.)
    dropped_through: u64,
    seeded: bool,
}

/// The log; cheap to clone (every clone is the same log).
#[derive(Clone)]
pub struct RelayLog {
    inner: Arc<Mutex<Inner>>,
    limits: LogLimits,
    /// The sequence number of the newest entry: readers wait on it.
    tip: watch::Sender<u64>,
}

/// A reader's position: the entries after `after_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    after_seq: u64,
}

impl RelayLog {
    pub fn new(limits: LogLimits) -> RelayLog {
        RelayLog {
            inner: Arc::new(Mutex::new(Inner {
                entries: VecDeque::new(),
                base_rv: 0,
                rv: 0,
                lsn: 0,
                next_seq: 1,
                dropped_through: 0,
                seeded: false,
            })),
            limits,
            tip: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state was (re-)seeded at `rv` after `lsn`: nothing before it can be relayed, and
    /// readers positioned before it are told to re-seed.
    pub fn seeded(&self, rv: Rv, lsn: u64, now: Instant) {
        let mut g = self.lock();
        let was_seeded = g.seeded;
        g.entries.clear();
        g.dropped_through = g.next_seq - 1;
        g.base_rv = rv;
        g.rv = rv;
        g.lsn = g.lsn.max(lsn);
        g.seeded = true;
        if was_seeded {
            // Kept (alone) so that readers already streaming see it and re-seed.
            push(&mut g, Entry::Reseed { rv, lsn }, now);
        }
        self.publish(g);
    }

    /// Appends what one output of the assembler did to the state, now at `rv`.
    pub fn append(&self, entry: Entry, now: Instant) {
        let mut g = self.lock();
        if !g.seeded {
            return;
        }
        g.rv = g.rv.max(entry.rv());
        g.lsn = g.lsn.max(entry.lsn());
        // Consecutive progress entries say the same thing: keep only the newest, so
        // heartbeats and read points do not crowd out transactions.
        if matches!(entry, Entry::Progress { .. })
            && matches!(
                g.entries.back(),
                Some(Held {
                    entry: Entry::Progress { .. },
                    ..
                })
            )
        {
            g.entries.pop_back();
        }
        push(&mut g, entry, now);
        trim(&mut g, self.limits, now);
        self.publish(g);
    }

    fn publish(&self, g: std::sync::MutexGuard<'_, Inner>) {
        let tip = g.next_seq - 1;
        drop(g);
        self.tip.send_replace(tip);
    }

    /// The state's rv and WAL position as far as the log knows.
    pub fn position(&self) -> (Rv, u64) {
        let g = self.lock();
        (g.rv, g.lsn)
    }

    /// A cursor for a reader whose state is at `rv`: it will read every entry that takes
    /// the state past `rv`.
    pub fn cursor_from(&self, rv: Rv) -> Result<Cursor, StartError> {
        let g = self.lock();
        if !g.seeded || rv < g.base_rv {
            return Err(StartError::Gone {
                requested: rv,
                oldest: g.base_rv,
            });
        }
        if rv > g.rv {
            return Err(StartError::TooNew {
                requested: rv,
                current: g.rv,
            });
        }
        // The first entry to send is the first one that takes the state past `rv`; a
        // progress entry at `rv` or later is harmless to send and keeps positions fresh.
        let after_seq = g
            .entries
            .iter()
            .find(|h| match &h.entry {
                // A re-seed takes a resourceVersion above every earlier one, so a reader
                // at or past it has seeded after it.
                Entry::Commit { rv: at, .. } | Entry::Reseed { rv: at, .. } => *at > rv,
                Entry::Progress { .. } => h.entry.rv() >= rv,
            })
            .map(|h| h.seq - 1)
            .unwrap_or(g.next_seq - 1);
        Ok(Cursor { after_seq })
    }

    /// The entries after `cursor`, up to `max`, and the cursor after them. `Err(Gone)` when
    /// the reader fell behind what the log keeps.
    pub fn read(&self, cursor: Cursor, max: usize) -> Result<(Vec<Entry>, Cursor), StartError> {
        let g = self.lock();
        if cursor.after_seq < g.dropped_through {
            // Entries this reader never saw were dropped: by a re-seed, which it is told
            // about and follows, or by trimming, which it cannot recover from here.
            return match g.entries.front() {
                Some(
                    h @ Held {
                        entry: Entry::Reseed { .. },
                        ..
                    },
                ) => Ok((vec![h.entry.clone()], Cursor { after_seq: h.seq })),
                _ => Err(StartError::Gone {
                    requested: 0,
                    oldest: g.base_rv,
                }),
            };
        }
        let start = g.entries.partition_point(|h| h.seq <= cursor.after_seq);
        let out: Vec<Entry> = g
            .entries
            .iter()
            .skip(start)
            .take(max)
            .map(|h| h.entry.clone())
            .collect();
        let after_seq = g
            .entries
            .get(start + out.len().saturating_sub(1))
            .filter(|_| !out.is_empty())
            .map(|h| h.seq)
            .unwrap_or(cursor.after_seq);
        Ok((out, Cursor { after_seq }))
    }

    /// A receiver that changes whenever an entry is appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tip.subscribe()
    }

    /// Entries held (for metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn push(g: &mut Inner, entry: Entry, now: Instant) {
    let seq = g.next_seq;
    g.next_seq += 1;
    g.entries.push_back(Held {
        seq,
        at: now,
        entry,
    });
}

/// Drops the oldest entries beyond the limits; the base moves to the rv the dropped entries
/// reached, so a reader behind it is told to re-seed rather than miss them.
fn trim(g: &mut Inner, limits: LogLimits, now: Instant) {
    while g.entries.len() > limits.max_entries
        || g.entries
            .front()
            .is_some_and(|h| now.duration_since(h.at) > limits.max_age && g.entries.len() > 1)
    {
        let Some(h) = g.entries.pop_front() else {
            break;
        };
        g.dropped_through = h.seq;
        g.base_rv = g.base_rv.max(h.entry.rv());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::Obj;
    use serde_json::json;

    fn put(name: &str, rv: Rv) -> Change {
        Change::Put(Arc::new(Obj::new(json!({
            "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string(), "uid": format!("u-{name}")}
        }))))
    }

    fn commit(rv: Rv, lsn: u64) -> Entry {
        Entry::Commit {
            rv,
            lsn,
            changes: Arc::new(vec![put(&format!("a{rv}"), rv)]),
        }
    }

    fn rvs(entries: &[Entry]) -> Vec<(char, Rv)> {
        entries
            .iter()
            .map(|e| {
                let c = match e {
                    Entry::Commit { .. } => 'c',
                    Entry::Progress { .. } => 'p',
                    Entry::Reseed { .. } => 'r',
                };
                (c, e.rv())
            })
            .collect()
    }

    #[test]
    fn a_reader_gets_every_transaction_after_its_rv_in_order() {
        let log = RelayLog::new(LogLimits::default());
        let t = Instant::now();
        log.seeded(10, 100, t);
        for (rv, lsn) in [(11, 110), (13, 130), (14, 140)] {
            log.append(commit(rv, lsn), t);
        }
        let c = log.cursor_from(11).unwrap();
        let (got, c) = log.read(c, 100).unwrap();
        assert_eq!(rvs(&got), vec![('c', 13), ('c', 14)]);
        let (more, _) = log.read(c, 100).unwrap();
        assert!(more.is_empty());
        let (all, _) = log.read(log.cursor_from(10).unwrap(), 100).unwrap();
        assert_eq!(rvs(&all), vec![('c', 11), ('c', 13), ('c', 14)]);
    }

    #[test]
    fn positions_before_the_seed_or_after_the_tip_are_refused() {
        let log = RelayLog::new(LogLimits::default());
        let t = Instant::now();
        assert!(matches!(log.cursor_from(0), Err(StartError::Gone { .. })));
        log.seeded(10, 100, t);
        assert_eq!(
            log.cursor_from(9),
            Err(StartError::Gone {
                requested: 9,
                oldest: 10
            })
        );
        assert_eq!(
            log.cursor_from(12),
            Err(StartError::TooNew {
                requested: 12,
                current: 10
            })
        );
    }

    #[test]
    fn consecutive_progress_entries_collapse_to_the_newest() {
        let log = RelayLog::new(LogLimits::default());
        let t = Instant::now();
        log.seeded(1, 10, t);
        let c = log.cursor_from(1).unwrap();
        log.append(commit(2, 20), t);
        for lsn in [21, 22, 23] {
            log.append(Entry::Progress { rv: 2, lsn }, t);
        }
        let (got, _) = log.read(c, 100).unwrap();
        assert_eq!(rvs(&got), vec![('c', 2), ('p', 2)]);
        assert_eq!(got[1].lsn(), 23);
    }

    #[test]
    fn a_reader_before_a_superseded_progress_entry_has_lost_nothing() {
        let log = RelayLog::new(LogLimits::default());
        let t = Instant::now();
        log.seeded(1, 10, t);
        log.append(Entry::Progress { rv: 1, lsn: 11 }, t);
        // Positioned before the only entry, which a newer progress entry then replaces.
        let c = log.cursor_from(1).unwrap();
        log.append(Entry::Progress { rv: 1, lsn: 12 }, t);
        let (got, c) = log.read(c, 10).unwrap();
        assert_eq!(rvs(&got), vec![('p', 1)]);
        assert_eq!(got[0].lsn(), 12);
        log.append(Entry::Progress { rv: 1, lsn: 13 }, t);
        log.append(commit(2, 20), t);
        let (got, _) = log.read(c, 10).unwrap();
        assert_eq!(rvs(&got), vec![('p', 1), ('c', 2)]);
    }

    #[test]
    fn a_reader_behind_the_trimmed_entries_is_told_to_reseed() {
        let log = RelayLog::new(LogLimits {
            max_entries: 2,
            max_age: Duration::from_secs(60),
        });
        let t = Instant::now();
        log.seeded(1, 10, t);
        let slow = log.cursor_from(1).unwrap();
        for rv in 2..=5 {
            log.append(commit(rv, rv * 10), t);
        }
        assert!(matches!(log.read(slow, 10), Err(StartError::Gone { .. })));
        assert!(matches!(
            log.cursor_from(2),
            Err(StartError::Gone { oldest: 3, .. })
        ));
        let (got, _) = log.read(log.cursor_from(3).unwrap(), 10).unwrap();
        assert_eq!(rvs(&got), vec![('c', 4), ('c', 5)]);
    }

    #[test]
    fn a_reader_that_seeded_at_or_after_a_reseed_is_not_told_again() {
        let log = RelayLog::new(LogLimits::default());
        let t = Instant::now();
        log.seeded(1, 10, t);
        log.seeded(7, 70, t);
        let (got, _) = log.read(log.cursor_from(7).unwrap(), 10).unwrap();
        assert!(got.is_empty(), "{got:?}");
        log.append(commit(8, 80), t);
        let (got, _) = log.read(log.cursor_from(7).unwrap(), 10).unwrap();
        assert_eq!(rvs(&got), vec![('c', 8)]);
    }

    #[test]
    fn a_reseed_is_relayed_to_readers_already_streaming() {
        let log = RelayLog::new(LogLimits::default());
        let t = Instant::now();
        log.seeded(1, 10, t);
        let c = log.cursor_from(1).unwrap();
        log.append(commit(2, 20), t);
        log.seeded(7, 70, t);
        let (got, _) = log.read(c, 10).unwrap();
        assert_eq!(rvs(&got), vec![('r', 7)]);
        assert!(matches!(log.cursor_from(2), Err(StartError::Gone { .. })));
    }
}
