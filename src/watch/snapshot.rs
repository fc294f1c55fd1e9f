//! The state as of one transaction boundary: live objects and per-kind history, in
//! persistent maps so that a snapshot is an `Arc` and the next one shares its structure.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use imbl::{HashMap, OrdMap, OrdSet, Vector};

use super::labels::LabelIndex;
use super::object::{key_of, Event, Obj, Rv};
use super::pack::{self, Dict};
use super::HistoryLimits;
use crate::k8s::selector::{FieldSelector, LabelSelector};

/// An object in its kind's set, ordered and found by its key (`key_of(namespace, name)`),
/// which it holds itself: the maps add no strings of their own per object.
#[derive(Clone)]
pub(crate) struct ByKey(pub(crate) Arc<Obj>);

impl Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(other.0.key())
    }
}

/// An object in the uid index, found by its uid (hashed as the `str` it borrows as).
#[derive(Clone)]
pub(crate) struct ByUid(pub(crate) Arc<Obj>);

impl Borrow<str> for ByUid {
    fn borrow(&self) -> &str {
        self.0.uid()
    }
}

impl PartialEq for ByUid {
    fn eq(&self, other: &Self) -> bool {
        self.0.uid() == other.0.uid()
    }
}

impl Eq for ByUid {}

impl Hash for ByUid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.uid().hash(state)
    }
}

/// Every live object by uid, whatever its kind.
pub(crate) type Uids = HashMap<ByUid, ()>;

/// One kind's objects and recent events.
#[derive(Clone)]
pub(crate) struct KindState {
    pub(crate) objects: OrdSet<ByKey>,
    /// The same objects by label value, for pages selected by label.
    pub(crate) labels: LabelIndex,
    /// Events in rv order; `history[i]` has sequence number `first_seq + i`.
    pub(crate) history: Vector<Arc<Event>>,
    pub(crate) first_seq: u64,
    /// Every event of this kind with an rv above this is in `history`: the oldest rv a
    /// watch can start from.
    pub(crate) history_start: Rv,
    /// The dictionary its cold objects are compressed with, once the kind had enough
    /// objects to train one.
    pub(crate) dict: Option<Arc<Dict>>,
    /// How many objects the kind had when training last failed (a retry waits for twice
    /// as many, so a kind zstd cannot learn from costs one attempt per doubling).
    pub(crate) untrained_at: usize,
    /// How many of `objects` are cold.
    pub(crate) cold: usize,
}

impl KindState {
    pub(crate) fn new(history_start: Rv) -> KindState {
        KindState {
            objects: OrdSet::new(),
            labels: LabelIndex::default(),
            history: Vector::new(),
            first_seq: 0,
            history_start,
            dict: None,
            untrained_at: 0,
            cold: 0,
        }
    }

    /// The kind's dictionary, trained now from a sample of its objects if it has none and
    /// enough objects to learn from.
    pub(crate) fn dict(&mut self) -> Option<Arc<Dict>> {
        if self.dict.is_none()
            && self.objects.len() >= pack::MIN_SAMPLES
            && self.objects.len() >= self.untrained_at * 2
        {
            let step = (self.objects.len() / pack::MAX_SAMPLES).max(1);
            let sample: Vec<Bytes> = self
                .objects
                .iter()
                .step_by(step)
                .take(pack::MAX_SAMPLES)
                .map(|o| o.0.json())
                .collect();
            self.dict = Dict::train(sample.iter().map(|b| &b[..])).map(Arc::new);
            if self.dict.is_none() {
                self.untrained_at = self.objects.len();
            }
        }
        self.dict.clone()
    }

    /// The sequence number the next event will get.
    pub(crate) fn head(&self) -> u64 {
        self.first_seq + self.history.len() as u64
    }

    /// The sequence number of the first event with an rv above `rv`.
    pub(crate) fn seq_after(&self, rv: Rv) -> u64 {
        let idx = self
            .history
            .binary_search_by(|e| {
                if e.rv() <= rv {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            })
            .unwrap_or_else(|i| i);
        self.first_seq + idx as u64
    }

    /// Drops events beyond the count limit or older than the age limit. Returns the
    /// events dropped.
    pub(crate) fn trim(&mut self, limits: &HistoryLimits, now: Instant) -> Vec<Arc<Event>> {
        let mut trimmed = Vec::new();
        while let Some(front) = self.history.front() {
            let too_many = self.history.len() > limits.max_events_per_kind
                && now.saturating_duration_since(front.at()) > limits.keep_recent;
            let too_old = now.saturating_duration_since(front.at()) > limits.max_age;
            if !too_many && !too_old {
                break;
            }
            self.history_start = front.rv();
            trimmed.extend(self.history.pop_front());
            self.first_seq += 1;
        }
        trimmed
    }

    pub(crate) fn needs_trim(&self, limits: &HistoryLimits, now: Instant) -> bool {
        self.history.front().is_some_and(|f| {
            (self.history.len() > limits.max_events_per_kind
                && now.saturating_duration_since(f.at()) > limits.keep_recent)
                || now.saturating_duration_since(f.at()) > limits.max_age
        })
    }
}

/// What a LIST or a watch selects: an optional namespace and kube's two selectors. It
/// looks only at an object's namespace, name and labels: events drop a previous state
/// that agrees with the new one on those (`Event::prev_passes`), so a filter that looked
/// at anything else would have to keep it.
#[derive(Clone, Copy)]
pub(crate) struct Filter<'a> {
    pub(crate) namespace: Option<&'a str>,
    pub(crate) labels: &'a LabelSelector,
    pub(crate) fields: &'a FieldSelector,
}

impl Filter<'_> {
    pub(crate) fn matches(&self, obj: &Obj) -> bool {
        self.namespace.is_none_or(|ns| obj.namespace() == ns)
            && self.labels.matches_with(|k| obj.label(k))
            && self.fields.matches(|field| match field {
                "metadata.name" => Some(obj.name()),
                "metadata.namespace" => Some(obj.namespace()),
                _ => None,
            })
    }

    fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// The whole state as of one transaction boundary. Cheap to keep: it shares all unchanged
/// structure with its neighbours.
pub struct Snapshot {
    pub(crate) rv: Rv,
    /// Incremented by every reset; watches of an older epoch end with 410 Expired.
    pub(crate) epoch: u64,
    /// The rv of the last reset: the history start of a kind that has had no event since.
    pub(crate) seed_rv: Rv,
    pub(crate) kinds: OrdMap<String, KindState>,
    pub(crate) uids: Uids,
    pub(crate) retained: Weak<Retained>,
}

impl Snapshot {
    pub(crate) fn empty(retained: Weak<Retained>) -> Snapshot {
        Snapshot {
            rv: 0,
            epoch: 0,
            seed_rv: 0,
            kinds: OrdMap::new(),
            uids: HashMap::new(),
            retained,
        }
    }

    /// The resourceVersion of the last change this snapshot includes (or of the seed).
    pub fn rv(&self) -> Rv {
        self.rv
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Obj>> {
        let key = key_of(namespace, name);
        let found = self.kinds.get(kind)?.objects.get(key.as_str())?;
        Some(Arc::clone(&found.0))
    }

    pub fn get_by_uid(&self, uid: &str) -> Option<Arc<Obj>> {
        let (found, ()) = self.uids.get_key_value(uid)?;
        Some(Arc::clone(&found.0))
    }

    /// How many objects of the kind are live.
    pub fn len(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, |k| k.objects.len())
    }

    pub fn is_empty(&self, kind: &str) -> bool {
        self.len(kind) == 0
    }

    /// One page of a LIST in (namespace, name) order, from the first key after `after`.
    ///
    /// Returns the objects, whether more match after them, and how many more match. The
    /// count is exact only when both selectors are empty (kube reports
    /// `remainingItemCount` only then); with a selector it is 0 and `more` says whether
    /// at least one more matches, without scanning the rest. A `limit` of 0 or `None`
    /// means no limit.
    ///
    /// A page that has more after it keeps this snapshot retrievable with
    /// [`State::snapshot_at`](super::State::snapshot_at) for the continue token.
    pub fn list(
        self: &Arc<Self>,
        kind: &str,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> (Vec<Arc<Obj>>, bool, usize) {
        let offset = after.is_none().then_some(0);
        self.list_from(kind, namespace, labels, fields, after, offset, limit)
    }

    /// [`Snapshot::list`], told how many objects of the scope precede `after` when that is
    /// known (the continue token carries it): without selectors or a namespace, the count
    /// of the rest is then the kind's size minus what came before, not a scan of the rest
    /// (8 ms for a page of 500 among 200,000 objects).
    #[allow(clippy::too_many_arguments)]
    pub fn list_from(
        self: &Arc<Self>,
        kind: &str,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        after: Option<(&str, &str)>,
        offset: Option<u64>,
        limit: Option<usize>,
    ) -> (Vec<Arc<Obj>>, bool, usize) {
        let filter = Filter {
            namespace,
            labels,
            fields,
        };
        let limit = limit.filter(|&l| l > 0).unwrap_or(usize::MAX);
        let mut iter = self
            .candidates(kind, namespace, labels, after)
            .filter(|o| filter.matches(o));
        let items: Vec<Arc<Obj>> = iter.by_ref().take(limit).cloned().collect();
        let (more, remaining) = if items.len() < limit {
            (false, 0)
        } else if filter.is_everything() {
            let n = match (namespace, offset) {
                (None, Some(before)) => self
                    .len(kind)
                    .saturating_sub(usize::try_from(before).unwrap_or(usize::MAX))
                    .saturating_sub(items.len()),
                _ => iter.count(),
            };
            (n > 0, n)
        } else {
            (iter.next().is_some(), 0)
        };
        if more {
            if let Some(retained) = self.retained.upgrade() {
                retained.retain(self);
            }
        }
        (items, more, remaining)
    }

    /// The objects of a kind in key order, within a namespace if given, after a key if given.
    pub(crate) fn scan<'a>(
        &'a self,
        kind: &str,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        let bounds = key_bounds(namespace, after);
        self.kinds
            .get(kind)
            .zip(bounds)
            .into_iter()
            .flat_map(move |(k, (lower, upper))| {
                let range: (Bound<&str>, Bound<&str>) = (as_str(&lower), as_str(&upper));
                k.objects.range::<_, str>(range)
            })
            .map(|o| &o.0)
    }

    /// What a LIST reads before filtering: the objects of the label index's run when the
    /// selector has a requirement it serves (a page of `agent=x` among a million Queries
    /// then reads only those Queries), or else the scan. The same objects that match, in
    /// the same order.
    fn candidates<'a>(
        &'a self,
        kind: &str,
        namespace: Option<&str>,
        labels: &'a LabelSelector,
        after: Option<(&str, &str)>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Obj>> + 'a> {
        let (Some(ks), Some((lower, upper))) = (self.kinds.get(kind), key_bounds(namespace, after))
        else {
            return Box::new(std::iter::empty());
        };
        // The index's iterator has found its ends once made, so the bounds may go after.
        match ks.labels.candidates(labels, as_str(&lower), as_str(&upper)) {
            Some(run) => run,
            None => Box::new(self.scan(kind, namespace, after)),
        }
    }

    pub(crate) fn kind_state(&self, kind: &str) -> Option<&KindState> {
        self.kinds.get(kind)
    }

    /// The oldest rv a watch of the kind can start from (older: 410 too old).
    pub fn oldest_rv(&self, kind: &str) -> Rv {
        self.kinds
            .get(kind)
            .map_or(self.seed_rv, |k| k.history_start)
    }

    /// The next state, sharing everything with this one.
    pub(crate) fn successor(&self) -> Snapshot {
        Snapshot {
            rv: self.rv,
            epoch: self.epoch,
            seed_rv: self.seed_rv,
            kinds: self.kinds.clone(),
            uids: self.uids.clone(),
            retained: self.retained.clone(),
        }
    }
}

/// The bounds on [`Obj::key`] of a namespace's objects after a key, or `None` when no key
/// can be within them (a continue key past the namespace).
fn key_bounds(
    namespace: Option<&str>,
    after: Option<(&str, &str)>,
) -> Option<(Bound<String>, Bound<String>)> {
    // Keys are `namespace NUL name`: a namespace's keys are those from `ns NUL` up to,
    // not including, `ns \x01`, and nothing else sorts between.
    let mut lower = match namespace {
        Some(ns) => Bound::Included(format!("{ns}\0")),
        None => Bound::Unbounded,
    };
    let upper = match namespace {
        Some(ns) => Bound::Excluded(format!("{ns}\u{1}")),
        None => Bound::Unbounded,
    };
    if let Some(after) = after {
        match namespace {
            Some(ns) if after.0 > ns => return None,
            Some(ns) if after.0 < ns => {}
            _ => lower = Bound::Excluded(key_of(after.0, after.1)),
        }
    }
    Some((lower, upper))
}

fn as_str(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("rv", &self.rv)
            .field("epoch", &self.epoch)
            .field("kinds", &self.kinds.len())
            .finish()
    }
}

/// Snapshots kept for continue tokens: those a LIST page with more after it was served
/// from, for `max_age` after that page, at most `max` of them.
pub(crate) struct Retained {
    map: Mutex<BTreeMap<Rv, (Instant, Arc<Snapshot>)>>,
    epoch: AtomicU64,
    max_age: Duration,
    max: usize,
}

impl Retained {
    pub(crate) fn new(max_age: Duration, max: usize) -> Retained {
        Retained {
            map: Mutex::new(BTreeMap::new()),
            epoch: AtomicU64::new(0),
            max_age,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Rv, (Instant, Arc<Snapshot>)>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, (at, _)| now.saturating_duration_since(*at) <= self.max_age);
        map
    }

    pub(crate) fn retain(&self, snap: &Arc<Snapshot>) {
        if self.max == 0 {
            return;
        }
        let mut map = self.lock();
        // Checked under the lock that `clear` takes, so a page served just before a reset
        // cannot bring back a snapshot of the previous epoch.
        if snap.epoch != self.epoch.load(Ordering::Acquire) {
            return;
        }
        map.entry(snap.rv)
            .or_insert_with(|| (Instant::now(), Arc::clone(snap)));
        while map.len() > self.max {
            map.pop_first();
        }
    }

    pub(crate) fn get(&self, rv: Rv) -> Option<Arc<Snapshot>> {
        self.lock().get(&rv).map(|(_, s)| Arc::clone(s))
    }

    pub(crate) fn clear(&self, epoch: u64) {
        let mut map = self.lock();
        self.epoch.store(epoch, Ordering::Release);
        map.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
