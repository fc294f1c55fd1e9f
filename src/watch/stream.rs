//! A watcher: a cursor into its kind's history that reads at its own pace.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::object::{Event, EventType, Frame, Obj, Rv};
use super::snapshot::{Filter, Snapshot};
use super::{Inner, KindSignal};
use crate::k8s::selector::{FieldSelector, LabelSelector};

/// How many events a watcher copies out of the history at a time.
const BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub kind: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub start: Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The events after the current rv.
    Now,
    /// Exactly the events after this rv.
    From(Rv),
    /// A synthetic ADDED for every matching live object at the current snapshot, then
    /// [`WatchItem::InitialEventsEnd`] with its rv, then the changes after it.
    InitialState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchError {
    /// The rv is older than the kind's history (kube: 410 "too old resource version: N (M)").
    TooOld { requested: Rv, oldest: Rv },
    /// The state did not reach the rv in time (kube: 504 "Too large resource version").
    TooNew { requested: Rv, current: Rv },
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::TooOld { requested, oldest } => {
                write!(f, "too old resource version: {requested} ({oldest})")
            }
            WatchError::TooNew { requested, current } => {
                write!(
                    f,
                    "Too large resource version: {requested}, current: {current}"
                )
            }
        }
    }
}

impl std::error::Error for WatchError {}

/// Why a watch ended; the last item of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// The state was reset (reseeded after a gap): every watch ends, clients relist.
    /// `requested` is the rv the watcher had reached, `oldest` the new seed's rv.
    Expired { requested: Rv, oldest: Rv },
    /// The watcher's unread backlog exceeded the bound (or fell out of the history).
    TooSlow,
}

#[derive(Debug, Clone)]
pub enum WatchItem {
    Event(WatchEvent),
    Bookmark(Rv),
    /// The end of the synthetic ADDED events of [`Start::InitialState`]: kube's bookmark
    /// annotated `k8s.io/initial-events-end: "true"`.
    InitialEventsEnd(Rv),
    Error(WatchEnd),
}

/// An event as this watcher is sent it. Its type may differ from the stored event's: an
/// object that starts matching the selector is ADDED, one that stops matching is DELETED.
#[derive(Clone)]
pub struct WatchEvent {
    ty: EventType,
    obj: Arc<Obj>,
    source: Source,
}

#[derive(Clone)]
enum Source {
    /// From the history; `from_prev` when the object sent is the previous state at the
    /// event's rv (a selector's DELETED).
    History { event: Arc<Event>, from_prev: bool },
    /// A synthetic ADDED of [`Start::InitialState`].
    Initial,
}

impl WatchEvent {
    pub fn ty(&self) -> EventType {
        self.ty
    }

    /// The object to send; its `metadata.resourceVersion` is the rv the client may resume from.
    pub fn object(&self) -> &Arc<Obj> {
        &self.obj
    }

    /// The stored event, `None` for a synthetic ADDED of the initial state.
    pub fn event(&self) -> Option<&Arc<Event>> {
        match &self.source {
            Source::History { event, .. } => Some(event),
            Source::Initial => None,
        }
    }

    /// The frame for this (type, object) in one format, made once and shared by every
    /// watcher sent the same thing (cached on the event); the synthetic ADDED of an
    /// initial state is made for each watcher.
    pub fn encoded(&self, key: u8, make: impl FnOnce(EventType, &Obj) -> Frame) -> Frame {
        let ty = self.ty;
        let obj = &self.obj;
        match &self.source {
            Source::History { event, from_prev } => {
                event.projected(key, ty, *from_prev, || make(ty, obj))
            }
            // Not cached: an initial state is every object, and a frame kept per object
            // would double the state's memory for as long as the object lives. Encoding
            // JSON is one copy of the stored text.
            Source::Initial => make(ty, obj),
        }
    }
}

impl std::fmt::Debug for WatchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.ty.as_str(), self.obj)
    }
}

struct Initial {
    snap: Arc<Snapshot>,
    after: Option<Arc<Obj>>,
    pending: VecDeque<Arc<Obj>>,
}

/// An open watch. Read it with [`Watch::next`] (or [`Watch::try_next`]); dropping it
/// closes it. It holds only a position in the kind's history, so one that is not read
/// costs the writer nothing and holds no events of its own.
pub struct Watch {
    inner: Arc<Inner>,
    signal: Arc<KindSignal>,
    wake: watch::Receiver<()>,
    kind: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    epoch: u64,
    initial: Option<Initial>,
    /// The sequence number of the next history event to read.
    cursor: u64,
    /// Every event with an rv up to this has been sent or skipped.
    progress: Rv,
    buffer: VecDeque<Arc<Event>>,
    bookmark_requested: bool,
    ended: bool,
}

impl Watch {
    pub(crate) fn open(
        inner: Arc<Inner>,
        signal: Arc<KindSignal>,
        wake: watch::Receiver<()>,
        req: WatchRequest,
        snap: Arc<Snapshot>,
    ) -> Result<Watch, WatchError> {
        let ks = snap.kind_state(&req.kind);
        let head = ks.map_or(0, |k| k.head());
        let (cursor, progress, initial) = match req.start {
            Start::Now => (head, snap.rv, None),
            Start::From(n) => {
                let oldest = snap.oldest_rv(&req.kind);
                if n < oldest {
                    inner.gone.fetch_add(1, Ordering::Relaxed);
                    return Err(WatchError::TooOld {
                        requested: n,
                        oldest,
                    });
                }
                (ks.map_or(0, |k| k.seq_after(n)), n, None)
            }
            Start::InitialState => {
                let initial = Initial {
                    snap: Arc::clone(&snap),
                    after: None,
                    pending: VecDeque::new(),
                };
                (head, snap.rv, Some(initial))
            }
        };
        inner.open.fetch_add(1, Ordering::Relaxed);
        signal.open.fetch_add(1, Ordering::Relaxed);
        Ok(Watch {
            inner,
            signal,
            wake,
            kind: req.kind,
            namespace: req.namespace,
            labels: req.labels,
            fields: req.fields,
            epoch: snap.epoch,
            initial,
            cursor,
            progress,
            buffer: VecDeque::new(),
            bookmark_requested: false,
            ended: false,
        })
    }

    /// The next item; `None` once the watch has ended (after its `Error` item, if any).
    /// Cancel-safe: a `select!` may drop the future without losing an item.
    pub async fn next(&mut self) -> Option<WatchItem> {
        loop {
            // Marked seen before looking, so a commit between the look and the wait wakes us.
            self.wake.borrow_and_update();
            if let Some(item) = self.try_next() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            if self.wake.changed().await.is_err() {
                self.ended = true;
                return None;
            }
        }
    }

    /// The next item if one is ready now. `None` means "nothing yet" unless
    /// [`is_ended`](Self::is_ended); an API can drain with it and flush when it says `None`.
    pub fn try_next(&mut self) -> Option<WatchItem> {
        loop {
            if self.ended {
                return None;
            }
            if self.initial.is_some() {
                return Some(self.next_initial());
            }
            if self.bookmark_requested {
                self.bookmark_requested = false;
                return Some(WatchItem::Bookmark(self.refresh_progress()));
            }
            while let Some(ev) = self.buffer.pop_front() {
                self.progress = self.progress.max(ev.progress_rv());
                if let Some(item) = self.project(ev) {
                    return Some(WatchItem::Event(item));
                }
            }
            match self.refill() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(end) => {
                    self.ended = true;
                    return Some(WatchItem::Error(end));
                }
            }
        }
    }

    /// Whether the stream has ended (its last item was returned).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The rv this watcher may announce in a bookmark: every event up to it has been sent
    /// or skipped, never more. When it has read everything, that is the state's current rv
    /// (no event of its kind lies between). `None` while the initial state is being sent
    /// or after the end.
    pub fn bookmark_rv(&mut self) -> Option<Rv> {
        if self.ended || self.initial.is_some() {
            return None;
        }
        Some(self.refresh_progress())
    }

    /// Makes the next item a [`WatchItem::Bookmark`] (after the initial state, if one is
    /// being sent). For the API's periodic bookmarks.
    pub fn request_bookmark(&mut self) {
        self.bookmark_requested = true;
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    fn filter(&self) -> Filter<'_> {
        Filter {
            namespace: self.namespace.as_deref(),
            labels: &self.labels,
            fields: &self.fields,
        }
    }

    fn next_initial(&mut self) -> WatchItem {
        let Some(mut init) = self.initial.take() else {
            unreachable!("called only during the initial state");
        };
        if init.pending.is_empty() {
            let filter = self.filter();
            let after = init.after.as_ref().map(|o| (o.namespace(), o.name()));
            init.pending = init
                .snap
                .scan(&self.kind, self.namespace.as_deref(), after)
                .filter(|o| filter.matches(o))
                .take(BATCH)
                .cloned()
                .collect();
        }
        match init.pending.pop_front() {
            Some(obj) => {
                init.after = Some(Arc::clone(&obj));
                self.initial = Some(init);
                WatchItem::Event(WatchEvent {
                    ty: EventType::Added,
                    obj,
                    source: Source::Initial,
                })
            }
            None => {
                self.progress = init.snap.rv;
                WatchItem::InitialEventsEnd(init.snap.rv)
            }
        }
    }

    /// kube's cacher: an object that passes now and did not is ADDED, one that passed and
    /// no longer does is DELETED with its previous state at the event's rv.
    fn project(&self, ev: Arc<Event>) -> Option<WatchEvent> {
        let filter = self.filter();
        let now = ev.ty() != EventType::Deleted && filter.matches(ev.object());
        let before = ev.prev_passes(|p| filter.matches(p));
        let (ty, from_prev) = match (now, before) {
            (true, false) => (EventType::Added, false),
            (true, true) => (EventType::Modified, false),
            (false, true) if ev.ty() == EventType::Deleted => (EventType::Deleted, false),
            (false, true) => (EventType::Deleted, true),
            (false, false) => return None,
        };
        let obj = if from_prev {
            Arc::clone(ev.prev_at_rv()?)
        } else {
            Arc::clone(ev.object())
        };
        Some(WatchEvent {
            ty,
            obj,
            source: Source::History {
                event: ev,
                from_prev,
            },
        })
    }

    /// Copies the next events out of the history. `Ok(false)`: nothing new.
    fn refill(&mut self) -> Result<bool, WatchEnd> {
        let snap = self.inner.current.load();
        if snap.epoch != self.epoch {
            self.inner.gone.fetch_add(1, Ordering::Relaxed);
            return Err(WatchEnd::Expired {
                requested: self.progress,
                oldest: snap.seed_rv,
            });
        }
        let Some(ks) = snap.kind_state(&self.kind) else {
            self.progress = self.progress.max(snap.rv);
            return Ok(false);
        };
        let backlog = ks.head().saturating_sub(self.cursor);
        let behind_for = || {
            let idx = self.cursor.saturating_sub(ks.first_seq) as usize;
            ks.history
                .get(idx)
                .map_or(Duration::ZERO, |e| e.at().elapsed())
        };
        if self.cursor < ks.first_seq
            || (backlog > self.inner.config.max_backlog as u64
                && behind_for() > self.inner.config.slow_after)
        {
            self.inner.slow_closed.fetch_add(1, Ordering::Relaxed);
            return Err(WatchEnd::TooSlow);
        }
        if backlog == 0 {
            self.progress = self.progress.max(snap.rv);
            return Ok(false);
        }
        let start = (self.cursor - ks.first_seq) as usize;
        let n = (backlog as usize).min(BATCH);
        let mut focus = ks.history.focus();
        self.buffer
            .extend((start..start + n).filter_map(|i| focus.get(i).cloned()));
        self.cursor += n as u64;
        Ok(true)
    }

    /// Advances `progress` to the state's rv when nothing is left to read.
    fn refresh_progress(&mut self) -> Rv {
        if self.buffer.is_empty() {
            let snap = self.inner.current.load();
            let caught_up = snap
                .kind_state(&self.kind)
                .is_none_or(|ks| ks.head() == self.cursor);
            if snap.epoch == self.epoch && caught_up {
                self.progress = self.progress.max(snap.rv);
            }
        }
        self.progress
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::Relaxed);
        self.signal.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("kind", &self.kind)
            .field("cursor", &self.cursor)
            .field("progress", &self.progress)
            .field("ended", &self.ended)
            .finish()
    }
}
