//! The single writer: turns committed transactions into the next snapshot and its events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use imbl::OrdMap;

use super::object::{Change, Event, EventType, Obj, Rv};
use super::pack::{self, Dict};
use super::snapshot::{ByKey, ByUid, KindState, Snapshot, Uids};
use super::HistoryLimits;

/// What one [`State::apply`](super::State::apply) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// Events appended to the history (a uid change counts two).
    pub events: usize,
    /// Changes skipped because the state already includes them (replay after a restart).
    pub skipped: usize,
    /// The state's resourceVersion afterwards.
    pub rv: Rv,
}

/// Builds the snapshot that follows `cur` once `txn` is applied. Returns it (`None` when
/// nothing changed), the outcome and the kinds that got events.
pub(crate) fn next_snapshot(
    cur: &Snapshot,
    txn: Vec<Change>,
    limits: &HistoryLimits,
    now: Instant,
) -> (Option<Snapshot>, ApplyOutcome, BTreeSet<String>) {
    let mut next = cur.successor();
    let mut out = ApplyOutcome {
        rv: cur.rv,
        ..ApplyOutcome::default()
    };
    let mut touched = BTreeSet::new();
    for change in txn {
        let obj = change.object();
        let rv = obj.rv();
        // rvs follow commit order and the state has every change up to its rv, so anything
        // at or below it is a replay of what the seed or an earlier apply already holds.
        if rv <= next.rv {
            out.skipped += 1;
            continue;
        }
        let kind = obj.kind().to_string();
        if !next.kinds.contains_key(&kind) {
            next.kinds
                .insert(kind.clone(), KindState::new(next.seed_rv));
        }
        let ks = next.kinds.get_mut(&kind).expect("inserted above");
        let events = match change {
            Change::Put(obj) => put(ks, &mut next.uids, obj, now),
            Change::Delete(obj) => delete(ks, &mut next.uids, obj, now),
        };
        let Some(events) = events else {
            out.skipped += 1;
            continue;
        };
        next.rv = rv;
        if !events.is_empty() {
            out.events += events.len();
            touched.insert(kind);
            for ev in events {
                ks.history.push_back(Arc::new(ev));
            }
        }
    }
    let mut trimmed = false;
    let stale: Vec<String> = next
        .kinds
        .iter()
        .filter(|(_, ks)| ks.needs_trim(limits, now))
        .map(|(k, _)| k.clone())
        .collect();
    for kind in stale {
        if let Some(ks) = next.kinds.get_mut(&kind) {
            let dropped = ks.trim(limits, now);
            trimmed |= !dropped.is_empty();
            cool_dropped(ks, &mut next.uids, &dropped);
        }
    }
    out.rv = next.rv;
    let changed = next.rv != cur.rv || trimmed;
    (changed.then_some(next), out, touched)
}

/// Compresses the live objects whose last event just left the history: until then the
/// event held the plain object anyway, and a cold copy would have been a second one.
fn cool_dropped(ks: &mut KindState, uids: &mut Uids, dropped: &[Arc<Event>]) {
    let mut dict = None;
    for ev in dropped {
        let obj = ev.object();
        if obj.is_cold() || ev.ty() == super::object::EventType::Deleted {
            continue;
        }
        let live = ks
            .objects
            .get(obj.key())
            .is_some_and(|o| Arc::ptr_eq(&o.0, obj));
        if !live {
            continue;
        }
        if dict.is_none() {
            dict = Some(ks.dict());
        }
        let Some(Some(d)) = &dict else {
            return;
        };
        if let Some(cold) = obj.cooled(d) {
            replace(ks, uids, Arc::new(cold));
        }
    }
}

/// Puts `obj` in place of the version with its key and rv: the same object, held
/// another way (no event).
fn replace(ks: &mut KindState, uids: &mut Uids, obj: Arc<Obj>) {
    index(uids, &obj);
    ks.cold += usize::from(obj.is_cold());
    if let Some(old) = ks.objects.insert(ByKey(Arc::clone(&obj))) {
        ks.labels.remove(&old.0);
        ks.cold -= usize::from(old.0.is_cold());
    }
    ks.labels.add(&obj);
}

/// Points the uid index at this version of the object.
fn index(uids: &mut Uids, obj: &Arc<Obj>) {
    // Removed first: an insert keeps the key already there, which is the old version.
    uids.remove(obj.uid());
    uids.insert(ByUid(Arc::clone(obj)), ());
}

/// The events of a Put, or `None` when the stored version is already this one or newer.
fn put(ks: &mut KindState, uids: &mut Uids, obj: Arc<Obj>, now: Instant) -> Option<Vec<Event>> {
    let rv = obj.rv();
    let events = match ks.objects.get(obj.key()).map(|o| Arc::clone(&o.0)) {
        Some(old) if old.rv() >= rv => return None,
        Some(old) if old.uid() == obj.uid() => {
            vec![Event::new(
                EventType::Modified,
                rv,
                Arc::clone(&obj),
                Some(old),
                now,
            )]
        }
        Some(old) => {
            // Deleted and recreated while the stream missed the delete: the old object
            // goes, then the new one comes, both at this rv. The DELETED object says
            // rv - 1 so that a client resuming from it is sent the ADDED again.
            uids.remove(old.uid());
            let gone = Arc::new(old.with_rv(rv.saturating_sub(1)));
            vec![
                Event::new(EventType::Deleted, rv, gone, Some(old), now),
                Event::new(EventType::Added, rv, Arc::clone(&obj), None, now),
            ]
        }
        None => {
            vec![Event::new(
                EventType::Added,
                rv,
                Arc::clone(&obj),
                None,
                now,
            )]
        }
    };
    replace(ks, uids, obj);
    Some(events)
}

/// The events of a Delete: none for a key that is not live, `None` for a replay.
fn delete(ks: &mut KindState, uids: &mut Uids, obj: Arc<Obj>, now: Instant) -> Option<Vec<Event>> {
    let rv = obj.rv();
    let Some(old) = ks.objects.get(obj.key()).map(|o| Arc::clone(&o.0)) else {
        return Some(Vec::new());
    };
    if old.rv() >= rv {
        return None;
    }
    ks.objects.remove(obj.key());
    ks.labels.remove(&old);
    ks.cold -= usize::from(old.is_cold());
    uids.remove(old.uid());
    // A delete of another incarnation than the one we hold still means the key is gone;
    // the watcher knew the one we hold, so it is the one reported gone.
    let last = if old.uid() == obj.uid() {
        obj
    } else {
        Arc::new(old.with_rv(rv))
    };
    Some(vec![Event::new(
        EventType::Deleted,
        rv,
        last,
        Some(old),
        now,
    )])
}

/// The state a reset installs: `objects` as the live set at `rv`, empty history.
pub(crate) fn seeded(cur: &Snapshot, mut objects: Vec<Arc<Obj>>, rv: Rv) -> Snapshot {
    let mut kinds: OrdMap<String, KindState> = OrdMap::new();
    let mut uids = Uids::new();
    let mut dicts = cool_seed(cur, &mut objects);
    // A seed read in one snapshot has no object above its rv; if one does, the state must
    // still cover it, or its own change would be applied (and sent) again.
    let rv = objects.iter().map(|o| o.rv()).fold(rv, Rv::max);
    for obj in objects {
        let kind = obj.kind().to_string();
        if !kinds.contains_key(&kind) {
            let mut ks = KindState::new(rv);
            ks.dict = dicts.remove(&kind);
            kinds.insert(kind.clone(), ks);
        }
        let ks = kinds.get_mut(&kind).expect("inserted above");
        if let Some(old) = ks.objects.get(obj.key()) {
            uids.remove(old.0.uid());
        }
        replace(ks, &mut uids, obj);
    }
    let mut next = cur.successor();
    next.rv = rv;
    next.seed_rv = rv;
    next.epoch = cur.epoch + 1;
    next.kinds = kinds;
    next.uids = uids;
    next
}

/// Compresses a seed's objects, kind by kind, with the kind's dictionary (the one the
/// state already has, or one trained on a sample of the seed). A seed's objects are as
/// old as objects get: none of them is in a history yet.
fn cool_seed(cur: &Snapshot, objects: &mut [Arc<Obj>]) -> BTreeMap<String, Arc<Dict>> {
    let mut dicts = BTreeMap::new();
    // Seeds arrive ordered by kind; sorting here keeps this right for any caller.
    if !objects.is_sorted_by(|a, b| a.kind() <= b.kind()) {
        objects.sort_by(|a, b| a.kind().cmp(b.kind()));
    }
    let mut rest = objects;
    while let Some(first) = rest.first() {
        let kind = first.kind().to_string();
        let n = rest.iter().take_while(|o| o.kind() == kind).count();
        let (group, tail) = rest.split_at_mut(n);
        rest = tail;
        let dict = cur
            .kinds
            .get(&kind)
            .and_then(|k| k.dict.clone())
            .or_else(|| {
                let step = (group.len() / pack::MAX_SAMPLES).max(1);
                let sample: Vec<_> = group.iter().step_by(step).map(|o| o.json()).collect();
                Dict::train(sample.iter().map(|b| &b[..])).map(Arc::new)
            });
        let Some(dict) = dict else { continue };
        cool_all(group, &dict);
        dicts.insert(kind, dict);
    }
    dicts
}

/// Replaces each plain object of `group` by its cold copy, on every core: a seed of a
/// million objects takes about two seconds of one.
fn cool_all(group: &mut [Arc<Obj>], dict: &Arc<Dict>) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = group.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for part in group.chunks_mut(chunk) {
            s.spawn(move || {
                for o in part {
                    if let Some(cold) = o.cooled(dict) {
                        *o = Arc::new(cold);
                    }
                }
            });
        }
    });
}
