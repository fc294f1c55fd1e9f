//! A kind's label index: one entry per (label key, label value, object) of its live
//! objects, in one ordered set, so that a page selected by `key=value` or `key in (...)`
//! reads only the objects carrying that value, in the (namespace, name) order of a scan.
//!
//! One set of triples rather than a set of objects per value: an `imbl` set allocates a
//! whole node even for one element (about a kilobyte), and a label with a value per object
//! (a request id, a hash) would then cost more than the objects. An entry is the object's
//! `Arc` and the offset of the label in its packed fields, 16 bytes, and the strings it
//! orders by are the object's own.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdSet;

use super::object::{LabelValue, Obj};
use crate::k8s::selector::{LabelSelector, Op};

/// One label of one object: `obj`'s label whose key starts at byte `at` of its packed
/// fields (see [`Obj::label_at`]).
#[derive(Clone)]
pub(crate) struct Entry {
    obj: Arc<Obj>,
    at: u32,
    /// The lengths of the label's key and value, so that comparing entries (about twenty
    /// comparisons per insert) slices instead of searching the packed fields for their
    /// separators: that search was a sixth of a million-object seed's CPU. They fit in the
    /// padding after `at`; a label too long for them is found by search ([`LONG`]).
    key_len: u16,
    value_len: u16,
}

/// The length a too-long key or value is recorded as.
const LONG: u16 = u16::MAX;

impl Entry {
    fn new(obj: &Arc<Obj>, at: u32, key: &str, value: &str) -> Entry {
        let len = |s: &str| {
            u16::try_from(s.len())
                .ok()
                .filter(|&n| n != LONG)
                .unwrap_or(LONG)
        };
        Entry {
            obj: Arc::clone(obj),
            at,
            key_len: len(key),
            value_len: len(value),
        }
    }

    fn label(&self) -> (&str, &str) {
        if self.key_len != LONG && self.value_len != LONG {
            let packed = self.obj.packed_fields();
            let key_start = self.at as usize;
            let key_end = key_start + usize::from(self.key_len);
            // key, NUL, tag, value
            let value_start = key_end + 2;
            let value_end = value_start + usize::from(self.value_len);
            if let (Some(k), Some(v)) = (
                packed.get(key_start..key_end),
                packed.get(value_start..value_end),
            ) {
                return (k, v);
            }
        }
        let (key, value) = self.obj.label_at(self.at);
        // Only string values are indexed (`LabelIndex::add`), so the other arm is unused.
        let value = match value {
            LabelValue::Str(v) => v,
            LabelValue::NotAString => "",
        };
        (key, value)
    }
}

/// Where a probe sits among the objects of one (label key, value): before all of them, at
/// an object key, or after all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pos<'a> {
    First,
    At(&'a str),
    Last,
}

/// What the set orders by: label key, label value, then the object's key. Entries and
/// probes (range bounds that are not objects) both have one.
trait Sorted {
    fn sort_key(&self) -> (&str, &str, Pos<'_>);
}

impl Sorted for Entry {
    fn sort_key(&self) -> (&str, &str, Pos<'_>) {
        let (key, value) = self.label();
        (key, value, Pos::At(self.obj.key()))
    }
}

struct Probe<'a> {
    key: &'a str,
    value: &'a str,
    pos: Pos<'a>,
}

impl Sorted for Probe<'_> {
    fn sort_key(&self) -> (&str, &str, Pos<'_>) {
        (self.key, self.value, self.pos)
    }
}

impl PartialEq for dyn Sorted + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.sort_key() == other.sort_key()
    }
}

impl Eq for dyn Sorted + '_ {}

impl PartialOrd for dyn Sorted + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn Sorted + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl<'a> Borrow<dyn Sorted + 'a> for Entry {
    fn borrow(&self) -> &(dyn Sorted + 'a) {
        self
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.sort_key() == other.sort_key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

fn as_dyn<'p, 's>(b: &'p Bound<Probe<'s>>) -> Bound<&'p (dyn Sorted + 's)> {
    match b {
        Bound::Included(p) => Bound::Included(p),
        Bound::Excluded(p) => Bound::Excluded(p),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The label index of one kind's live objects.
#[derive(Clone, Default)]
pub(crate) struct LabelIndex {
    entries: OrdSet<Entry>,
}

impl LabelIndex {
    /// Indexes the object's string-valued labels. An entry already there for the same
    /// (key, value, object key) is replaced, so it points at this version of the object.
    pub(crate) fn add(&mut self, obj: &Arc<Obj>) {
        for (at, key, value) in obj.label_offsets() {
            if let LabelValue::Str(value) = value {
                self.entries.insert(Entry::new(obj, at, key, value));
            }
        }
    }

    /// Removes the object's entries (those `add` made for this version of it).
    pub(crate) fn remove(&mut self, obj: &Arc<Obj>) {
        for (at, key, value) in obj.label_offsets() {
            if let LabelValue::Str(value) = value {
                self.entries.remove(&Entry::new(obj, at, key, value));
            }
        }
    }

    /// The number of entries (one per indexed label per object).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The objects whose label `key` is `value`, in key order, with their keys within
    /// `lower..upper` (bounds on [`Obj::key`], as a scan takes them).
    fn range<'a>(
        &'a self,
        key: &str,
        value: &str,
        lower: Bound<&str>,
        upper: Bound<&str>,
    ) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        let probe = |pos| Probe { key, value, pos };
        let lo = match lower {
            Bound::Unbounded => Bound::Included(probe(Pos::First)),
            Bound::Included(k) => Bound::Included(probe(Pos::At(k))),
            Bound::Excluded(k) => Bound::Excluded(probe(Pos::At(k))),
        };
        let hi = match upper {
            Bound::Unbounded => Bound::Included(probe(Pos::Last)),
            Bound::Included(k) => Bound::Included(probe(Pos::At(k))),
            Bound::Excluded(k) => Bound::Excluded(probe(Pos::At(k))),
        };
        // The set's iterator has found both ends once made: it keeps no borrow of them.
        self.entries
            .range::<_, dyn Sorted>((as_dyn(&lo), as_dyn(&hi)))
            .map(|e| &e.obj)
    }

    /// The candidates for `selector` within the key bounds, in key order, when one of its
    /// requirements can be read from the index: `key=value`, `key==value` or
    /// `key in (...)` (several values are merged by key; an object has one value per key,
    /// so the runs are disjoint). Every object that matches the selector is among them;
    /// the caller still applies the whole filter. `None` when no requirement is indexable.
    pub(crate) fn candidates<'a>(
        &'a self,
        selector: &LabelSelector,
        lower: Bound<&str>,
        upper: Bound<&str>,
    ) -> Option<Box<dyn Iterator<Item = &'a Arc<Obj>> + 'a>> {
        let pick = |single: bool| {
            selector.requirements.iter().find(|r| match r.op {
                Op::Equals | Op::DoubleEquals => true,
                Op::In => !single || r.values.len() == 1,
                _ => false,
            })
        };
        let req = pick(true).or_else(|| pick(false))?;
        let mut values: Vec<&str> = req.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let mut runs: Vec<_> = values
            .into_iter()
            .map(|v| self.range(&req.key, v, lower, upper).peekable())
            .collect();
        if runs.len() == 1 {
            return runs
                .pop()
                .map(|r| Box::new(r) as Box<dyn Iterator<Item = _>>);
        }
        Some(Box::new(std::iter::from_fn(move || {
            let next = runs
                .iter_mut()
                .enumerate()
                .filter_map(|(i, r)| r.peek().map(|o| (i, o.key())))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i)?;
            runs[next].next()
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::tests::obj_with;
    use serde_json::json;

    fn names<'a>(it: impl Iterator<Item = &'a Arc<Obj>>) -> Vec<String> {
        it.map(|o| format!("{}/{}", o.namespace(), o.name()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap()
    }

    #[test]
    fn a_value_selects_its_objects_in_key_order_within_the_bounds() {
        let mut index = LabelIndex::default();
        for (i, (ns, name, env)) in [
            ("b", "x", "prod"),
            ("a", "y", "prod"),
            ("a", "x", "dev"),
            ("a", "z", "prod"),
        ]
        .into_iter()
        .enumerate()
        {
            let labels = json!({"labels": {"env": env, "id": format!("{i}")}});
            index.add(&obj_with("Agent", ns, name, &format!("u{i}"), 1, labels));
        }
        let all = |s| {
            names(
                index
                    .candidates(&sel(s), Bound::Unbounded, Bound::Unbounded)
                    .unwrap(),
            )
        };
        assert_eq!(all("env=prod"), ["a/y", "a/z", "b/x"]);
        assert_eq!(all("env in (dev,prod,dev)"), ["a/x", "a/y", "a/z", "b/x"]);
        assert_eq!(all("env=none"), Vec::<String>::new());
        let after_y = index
            .candidates(
                &sel("env=prod"),
                Bound::Excluded("a\0y"),
                Bound::Excluded("a\u{1}"),
            )
            .unwrap();
        assert_eq!(names(after_y), ["a/z"]);
        assert!(index
            .candidates(&sel("env!=prod,id"), Bound::Unbounded, Bound::Unbounded)
            .is_none());
    }

    #[test]
    fn a_label_too_long_for_an_entrys_lengths_is_found_and_removed_all_the_same() {
        // Written by SQL, nothing limits a label's length; the entry then searches.
        let long = "v".repeat(70_000);
        let mut index = LabelIndex::default();
        let a = obj_with(
            "Agent",
            "a",
            "x",
            "u1",
            1,
            json!({"labels": {"big": long, "env": "prod"}}),
        );
        let b = obj_with(
            "Agent",
            "a",
            "y",
            "u2",
            1,
            json!({"labels": {"big": "small", "env": "prod"}}),
        );
        index.add(&a);
        index.add(&b);
        let found = |s: &str, index: &LabelIndex| {
            names(
                index
                    .candidates(&sel(s), Bound::Unbounded, Bound::Unbounded)
                    .unwrap(),
            )
        };
        assert_eq!(found("big=small,env=prod", &index), ["a/y"]);
        assert_eq!(found("big=small", &index), ["a/y"]);
        assert_eq!(found("env=prod", &index), ["a/x", "a/y"]);
        index.remove(&a);
        assert_eq!(found("env=prod", &index), ["a/y"]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn removing_an_object_removes_its_entries_and_only_string_values_are_indexed() {
        let mut index = LabelIndex::default();
        let a = obj_with(
            "Agent",
            "a",
            "x",
            "u1",
            1,
            json!({"labels": {"env": "prod", "n": 3}}),
        );
        let b = obj_with(
            "Agent",
            "a",
            "y",
            "u2",
            2,
            json!({"labels": {"env": "prod"}}),
        );
        index.add(&a);
        index.add(&b);
        assert_eq!(index.len(), 2);
        // Re-adding a version with the same labels replaces its entries.
        let a2 = obj_with(
            "Agent",
            "a",
            "x",
            "u1",
            3,
            json!({"labels": {"env": "prod", "n": 3}}),
        );
        index.add(&a2);
        assert_eq!(index.len(), 2);
        let found: Vec<_> = index
            .candidates(&sel("env=prod"), Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .map(|o| o.rv())
            .collect();
        assert_eq!(found, [3, 2]);
        index.remove(&a2);
        index.remove(&b);
        assert_eq!(index.len(), 0);
    }
}
