//! The in-memory copy of every live object, fed by the change stream, that serves LIST,
//! GET and WATCH with kube-apiserver's watch-cache ("cacher") semantics.
//!
//! **One writer, lock-free readers.** The change stream (`cdc`) is the only writer: it
//! calls [`State::apply`] with one committed transaction at a time (or
//! [`State::reset`] to seed). Each apply builds the next [`Snapshot`] from persistent
//! maps (`imbl`), sharing all unchanged structure, and publishes it with one atomic
//! pointer swap, so a reader sees a whole transaction or none of it and never waits.
//!
//! **History lives in the snapshot.** Each kind's recent events are a persistent vector
//! inside the snapshot, so "the objects at rv N" and "the events after rv N" always come
//! from one consistent value: starting a watch is a binary search, with no window between
//! reading history and subscribing.
//!
//! **Fan-out a slow consumer cannot stall.** A watcher is a cursor into its kind's history
//! and copies events out at its own pace; the writer appends once per event and wakes the
//! kind's waiters through one `tokio::sync::watch` channel, whatever their number, and
//! never awaits. A watcher whose unread backlog passes `max_backlog`, or whose position
//! was trimmed away, ends with [`WatchEnd::TooSlow`]. (kine's broadcaster loops over its
//! subscribers' channels in the writer; this does not.)
//!
//! **Continue tokens** page through the snapshot of the first page: a page with more after
//! it keeps its snapshot for `max_age`, found again with [`State::snapshot_at`].
//!
//! **Semantics worth knowing** (kube's cacher unless said otherwise):
//! - A change at or below the state's rv is a replay and is skipped (rvs are in commit
//!   order and the seed is read in one snapshot), so no tombstones are needed.
//! - An object that stops matching a watcher's selector is sent as DELETED carrying its
//!   previous (last matching) state with the event's rv, as the cacher does.
//! - A Put whose uid differs from the stored one gives DELETED(old) then ADDED(new), both
//!   at the Put's rv in the history; the DELETED object says rv - 1, so a client that
//!   resumes from it is sent the ADDED again (at-least-once, never a lost ADDED).
//! - A kind's oldest valid start is the rv of the last event dropped from its history (or
//!   the seed's rv): exact, and never stricter than kube's `oldest event - 1`.

mod apply;
mod labels;
mod object;
mod pack;
mod snapshot;
mod stream;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod proptests_labels;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cold;
#[cfg(test)]
mod tests_watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use apply::ApplyOutcome;
pub use object::{Change, EncodeError, Event, EventType, Frame, Obj, ObjError, Rv};
pub use pack::{Dict, UnpackError};
pub use snapshot::Snapshot;
pub use stream::{Start, Watch, WatchEnd, WatchError, WatchEvent, WatchItem, WatchRequest};

use snapshot::Retained;

/// How long the newest events are kept past the count limit, and how long a watcher may
/// be behind by more than `max_backlog` before it counts as slow.
const KEEP_RECENT: Duration = Duration::from_secs(10);

/// How much history each kind keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events older than this are dropped (and so are retained LIST snapshots).
    pub max_age: Duration,
    pub max_events_per_kind: usize,
    /// Events younger than this are kept whatever their number: one transaction of
    /// 200,000 rows reaches its watchers whole instead of being trimmed as it is applied.
    pub keep_recent: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_age: crate::config::defaults::WATCH_HISTORY,
            max_events_per_kind: crate::config::defaults::WATCH_HISTORY_EVENTS,
            keep_recent: KEEP_RECENT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub history: HistoryLimits,
    /// A watcher with more unread events of its kind than this, the oldest of them older
    /// than `slow_after`, ends with TooSlow: a big transaction puts every watcher far
    /// behind at once, which is not being slow.
    pub max_backlog: usize,
    pub slow_after: Duration,
    /// At most this many snapshots are kept for continue tokens (oldest dropped first).
    pub max_paged_snapshots: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            history: HistoryLimits::default(),
            max_backlog: 10_000,
            slow_after: KEEP_RECENT,
            max_paged_snapshots: 1_000,
        }
    }
}

/// Wakes the watchers of one kind.
pub(crate) struct KindSignal {
    tx: watch::Sender<()>,
    open: AtomicUsize,
}

pub(crate) struct Inner {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
    config: Config,
    retained: Arc<Retained>,
    signals: Mutex<HashMap<String, Arc<KindSignal>>>,
    rv: watch::Sender<Rv>,
    lsn: watch::Sender<u64>,
    open: AtomicUsize,
    slow_closed: AtomicU64,
    gone: AtomicU64,
}

impl Inner {
    fn signal(&self, kind: &str) -> Arc<KindSignal> {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(signals.entry(kind.to_string()).or_insert_with(|| {
            Arc::new(KindSignal {
                tx: watch::Sender::new(()),
                open: AtomicUsize::new(0),
            })
        }))
    }

    fn wake<'a>(&self, kinds: impl IntoIterator<Item = &'a String>) {
        let signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        for kind in kinds {
            if let Some(s) = signals.get(kind) {
                s.tx.send_replace(());
            }
        }
    }

    fn wake_all(&self) {
        let signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        for s in signals.values() {
            s.tx.send_replace(());
        }
    }
}

/// The watch cache: live objects, history and watchers. Cheap to clone; every clone is
/// the same state.
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

impl State {
    /// An empty cache at rv 0. It is not seeded until the first [`reset`](Self::reset).
    pub fn new(config: Config) -> State {
        let retained = Arc::new(Retained::new(
            config.history.max_age,
            config.max_paged_snapshots,
        ));
        let empty = Snapshot::empty(Arc::downgrade(&retained));
        State {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(empty),
                writer: Mutex::new(()),
                config,
                retained,
                signals: Mutex::new(HashMap::new()),
                rv: watch::Sender::new(0),
                lsn: watch::Sender::new(0),
                open: AtomicUsize::new(0),
                slow_closed: AtomicU64::new(0),
                gone: AtomicU64::new(0),
            }),
        }
    }

    // ---- writer side (the change stream) ----

    /// Applies one committed transaction (single writer). The state decides ADDED /
    /// MODIFIED / DELETED; a change at or below the state's rv (or the stored object's) is
    /// a replay and is skipped. Never waits for a reader or a watcher.
    pub fn apply(&self, txn: Vec<Change>) -> ApplyOutcome {
        let inner = &self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let cur = inner.current.load_full();
        let (next, outcome, touched) =
            apply::next_snapshot(&cur, txn, &inner.config.history, Instant::now());
        if let Some(next) = next {
            inner.current.store(Arc::new(next));
            inner.wake(&touched);
            if outcome.rv != cur.rv {
                inner.rv.send_replace(outcome.rv);
            }
        }
        outcome
    }

    /// Seeds (or reseeds after a gap) with the live objects as of `rv`: replaces
    /// everything, forgets history and retained snapshots (older rvs now get 410), and ends
    /// every open watch with [`WatchEnd::Expired`].
    pub fn reset(&self, objects: Vec<Arc<Obj>>, rv: Rv) {
        let inner = &self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let cur = inner.current.load_full();
        let next = apply::seeded(&cur, objects, rv);
        let (epoch, rv) = (next.epoch, next.rv);
        inner.retained.clear(epoch);
        inner.current.store(Arc::new(next));
        inner.wake_all();
        inner.rv.send_replace(rv);
    }

    /// Records the WAL position the applied state reflects (the stream's commit LSN, or its
    /// keepalive's position when idle).
    pub fn set_applied_lsn(&self, lsn: u64) {
        self.inner.lsn.send_if_modified(|cur| {
            let advanced = lsn > *cur;
            if advanced {
                *cur = lsn;
            }
            advanced
        });
    }

    /// Replaces the applied WAL position, backwards too: a re-seed's state reflects the
    /// position its stream starts at, which after PostgreSQL fails over to a standby is
    /// below positions of the old primary's timeline.
    pub fn rewind_applied_lsn(&self, lsn: u64) {
        self.inner.lsn.send_replace(lsn);
    }

    // ---- readers ----

    /// Whether a [`reset`](Self::reset) has seeded the cache.
    pub fn is_seeded(&self) -> bool {
        self.inner.current.load().epoch > 0
    }

    /// The current state; lock-free.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The state at `rv` if it is the current one or a LIST page with more after it was
    /// served from it within `max_age`; `None` otherwise (the API answers 410 with kube's
    /// inconsistent-continue message).
    pub fn snapshot_at(&self, rv: Rv) -> Option<Arc<Snapshot>> {
        let cur = self.snapshot();
        if cur.rv == rv {
            return Some(cur);
        }
        self.inner.retained.get(rv)
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> Rv {
        self.inner.current.load().rv
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Obj>> {
        self.inner.current.load().get(kind, namespace, name)
    }

    pub fn get_by_uid(&self, uid: &str) -> Option<Arc<Obj>> {
        self.inner.current.load().get_by_uid(uid)
    }

    /// Waits until the state has reached `rv`; false after `timeout`.
    pub async fn wait_for_rv(&self, rv: Rv, timeout: Duration) -> bool {
        wait_at_least(&self.inner.rv, rv, timeout).await
    }

    /// Waits until the applied WAL position has reached `lsn`; false after `timeout`. Every
    /// waiter shares the one notification of each advance.
    pub async fn wait_for_lsn(&self, lsn: u64, timeout: Duration) -> bool {
        wait_at_least(&self.inner.lsn, lsn, timeout).await
    }

    pub fn applied_lsn(&self) -> u64 {
        *self.inner.lsn.borrow()
    }

    /// Opens a watch. [`Start::From`] an rv above the current one waits up to `too_new_wait`
    /// for the state to catch up (the API passes 3 s) before [`WatchError::TooNew`].
    pub async fn watch(
        &self,
        req: WatchRequest,
        too_new_wait: Duration,
    ) -> Result<Watch, WatchError> {
        if let Start::From(n) = req.start {
            if !self.wait_for_rv(n, too_new_wait).await {
                return Err(WatchError::TooNew {
                    requested: n,
                    current: self.rv(),
                });
            }
        }
        let signal = self.inner.signal(&req.kind);
        // Subscribed before the snapshot is read: a commit after the read wakes the watcher.
        let wake = signal.tx.subscribe();
        let snap = self.snapshot();
        Watch::open(Arc::clone(&self.inner), signal, wake, req, snap)
    }

    // ---- metrics ----

    pub fn open_watchers(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Open watchers per kind.
    pub fn open_watchers_by_kind(&self) -> Vec<(String, usize)> {
        let signals = self
            .inner
            .signals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = signals
            .iter()
            .map(|(k, s)| (k.clone(), s.open.load(Ordering::Relaxed)))
            .collect();
        out.sort();
        out
    }

    /// Events held per kind.
    pub fn history_sizes(&self) -> Vec<(String, usize)> {
        let snap = self.inner.current.load();
        snap.kinds
            .iter()
            .map(|(k, ks)| (k.clone(), ks.history.len()))
            .collect()
    }

    /// The oldest rv a watch of the kind can start from now.
    pub fn oldest_rv(&self, kind: &str) -> Rv {
        self.inner.current.load().oldest_rv(kind)
    }

    /// Live objects per kind.
    pub fn object_counts(&self) -> Vec<(String, usize)> {
        let snap = self.inner.current.load();
        snap.kinds
            .iter()
            .map(|(k, ks)| (k.clone(), ks.objects.len()))
            .collect()
    }

    /// The dictionary `kind`'s cold objects are compressed with, if it has one.
    pub fn dict(&self, kind: &str) -> Option<Arc<Dict>> {
        self.inner
            .current
            .load()
            .kinds
            .get(kind)
            .and_then(|k| k.dict.clone())
    }

    /// Per kind, how many of its live objects are held compressed (cold).
    pub fn cold_counts(&self) -> Vec<(String, usize)> {
        let snap = self.inner.current.load();
        snap.kinds
            .iter()
            .map(|(k, ks)| (k.clone(), ks.cold))
            .collect()
    }

    /// Watchers ended with TooSlow since start.
    pub fn slow_watchers_closed(&self) -> u64 {
        self.inner.slow_closed.load(Ordering::Relaxed)
    }

    /// 410s this module produced: watches refused as too old and watches ended as expired.
    pub fn gone_sent(&self) -> u64 {
        self.inner.gone.load(Ordering::Relaxed)
    }

    /// Snapshots kept for continue tokens.
    pub fn retained_snapshots(&self) -> usize {
        self.inner.retained.len()
    }
}

impl Default for State {
    fn default() -> Self {
        State::new(Config::default())
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("rv", &self.rv())
            .field("open_watchers", &self.open_watchers())
            .finish()
    }
}

async fn wait_at_least(tx: &watch::Sender<u64>, target: u64, timeout: Duration) -> bool {
    let mut rx = tx.subscribe();
    if *rx.borrow_and_update() >= target {
        return true;
    }
    let reached = tokio::time::timeout(timeout, async {
        rx.wait_for(|v| *v >= target).await.is_ok()
    })
    .await;
    reached.unwrap_or(false)
}
