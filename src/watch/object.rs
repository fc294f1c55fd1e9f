//! Stored objects, the changes the writer applies and the events watchers read.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::pack::Dict;

pub use crate::k8s::selector::LabelValue;

/// A resourceVersion: global, one per row change, increasing in commit order.
pub type Rv = u64;

/// One live (or, in a DELETED event, final) object, serialized once.
///
/// Built by the change stream (or the seed) and shared by the snapshot, the history and
/// every watcher through `Arc<Obj>`; it never changes after construction.
///
/// Only the JSON text is kept, with the few fields the cache indexes and filters by, packed
/// into one string. A parsed `serde_json::Value` tree costs about eight times its JSON in
/// memory (with the tree, 10,000 Queries took 114 MiB for 6.9 MiB of JSON), and a field per
/// string plus a label map cost another 800 bytes per object on top of a 930-byte Query
/// (benches/memory.rs). The tree is rebuilt on demand by [`Obj::value`], for the rarer
/// paths that need it (Table rendering, YAML).
///
/// The JSON is either plain or, once the object is cold, compressed with its kind's
/// dictionary ([`Dict`]): readers get the same bytes either way ([`Obj::with_json`]).
pub struct Obj {
    json: Body,
    /// `namespace NUL name NUL uid NUL kind`, then per label `NUL key NUL tag value` (tag
    /// `s` for a string value, `x` for any other JSON value). NUL cannot occur in any of
    /// them: PostgreSQL's `text` and `jsonb` both refuse it.
    packed: Box<str>,
    /// Where namespace, name, uid and kind end in `packed`.
    ends: [u32; 4],
    rv: Rv,
}

/// An object's JSON text, as built or compressed.
enum Body {
    Plain(Bytes),
    Cold {
        data: Box<[u8]>,
        len: u32,
        dict: Arc<Dict>,
    },
}

/// NUL: the separator of [`Obj`]'s packed fields, and of the namespace and name in a key.
const SEP: char = '\0';

/// The state's key of an object: namespace and name joined by NUL, so that keys sort as
/// the (namespace, name) pairs do ("" for a cluster-scoped object's namespace).
pub(crate) fn key_of(namespace: &str, name: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + name.len() + 1);
    k.push_str(namespace);
    k.push(SEP);
    k.push_str(name);
    k
}

/// Why a value cannot be stored: the fields the cache indexes by are missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjError {
    NotAnObject,
    /// A required field (`kind`, `metadata.name`, `metadata.uid`) is missing or empty.
    Missing(&'static str),
    /// `metadata.resourceVersion` is missing or not a decimal integer.
    ResourceVersion(String),
}

impl fmt::Display for ObjError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjError::NotAnObject => f.write_str("object is not a JSON object"),
            ObjError::Missing(field) => write!(f, "{field} is missing"),
            ObjError::ResourceVersion(v) => {
                write!(f, "metadata.resourceVersion {v:?} is not a decimal integer")
            }
        }
    }
}

impl std::error::Error for ObjError {}

impl Obj {
    /// Builds an object from a value the store assembled (`store::row::assemble` always
    /// sets kind, name, uid and resourceVersion). A missing field reads as "", a missing or
    /// malformed resourceVersion as 0 (and `apply` then skips the object as a replay); use
    /// [`Obj::try_new`] where the value may be incomplete.
    pub fn new(value: Value) -> Obj {
        Obj::parse(value).0
    }

    /// Like [`Obj::new`], refusing a value without kind, name, uid or a decimal
    /// resourceVersion.
    pub fn try_new(value: Value) -> Result<Obj, ObjError> {
        let (obj, problem) = Obj::parse(value);
        match problem {
            Some(e) => Err(e),
            None => Ok(obj),
        }
    }

    /// Parses the indexed fields and serializes the object once; also says what was wrong.
    fn parse(value: Value) -> (Obj, Option<ObjError>) {
        let empty = Map::new();
        let top = value.as_object().unwrap_or(&empty);
        let meta = top
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let text = |m: &'_ Map<String, Value>, k: &str| -> String {
            m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
        };
        let kind = text(top, "kind");
        let name = text(meta, "name");
        let uid = text(meta, "uid");
        let rv_text = text(meta, "resourceVersion");
        let rv = rv_text.parse::<Rv>().ok();
        let problem = if !value.is_object() {
            Some(ObjError::NotAnObject)
        } else if kind.is_empty() {
            Some(ObjError::Missing("kind"))
        } else if name.is_empty() {
            Some(ObjError::Missing("metadata.name"))
        } else if uid.is_empty() {
            Some(ObjError::Missing("metadata.uid"))
        } else if rv.is_none() {
            Some(ObjError::ResourceVersion(rv_text))
        } else {
            None
        };
        let namespace = text(meta, "namespace");
        let labels = meta.get("labels").and_then(Value::as_object);
        let (packed, ends) = pack(&namespace, &name, &uid, &kind, labels);
        let obj = Obj {
            json: Body::Plain(encode(&value)),
            packed,
            ends,
            rv: rv.unwrap_or(0),
        };
        (obj, problem)
    }

    /// The complete object, parsed from its JSON (which was made from a `Value`, so this
    /// cannot fail but for a bug; a `Null` then stands in, rather than a panic).
    pub fn value(&self) -> Value {
        self.with_json(|j| serde_json::from_slice::<Value>(j))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, obj = ?self, "a stored object's JSON does not parse");
                Value::Null
            })
    }

    /// The object serialized as JSON, computed once when it was built: shared when the
    /// object is plain, decompressed into a buffer of its own when it is cold.
    pub fn json(&self) -> Bytes {
        match &self.json {
            Body::Plain(b) => b.clone(),
            Body::Cold { .. } => Bytes::from(self.with_json(<[u8]>::to_vec)),
        }
    }

    /// The length of [`Obj::json`], without decompressing.
    pub fn json_len(&self) -> usize {
        match &self.json {
            Body::Plain(b) => b.len(),
            Body::Cold { len, .. } => *len as usize,
        }
    }

    /// Calls `f` with the object's JSON, without a copy for a plain object and with a
    /// buffer of this thread's for a cold one (so `f` must not call `with_json` on
    /// another cold object: it would get a buffer of its own, at the cost of one).
    pub fn with_json<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.json {
            Body::Plain(b) => f(b),
            Body::Cold { data, len, dict } => {
                let mut f = Some(f);
                match dict.unpack(data, *len as usize, |j| (f.take().expect("called once"))(j)) {
                    Ok(r) => r,
                    Err(e) => {
                        // The bytes were compressed here and never change: a bug, told
                        // loudly, and the object read as JSON `null` rather than a panic.
                        tracing::error!(error = %e, obj = ?self, "a cold object does not decompress");
                        (f.take().expect("not called on error"))(b"null")
                    }
                }
            }
        }
    }

    /// Whether the JSON is held compressed.
    pub fn is_cold(&self) -> bool {
        matches!(self.json, Body::Cold { .. })
    }

    /// The same object with its JSON compressed by `dict`; `None` when it already is, or
    /// when compressing would not make it smaller.
    pub fn cooled(&self, dict: &Arc<Dict>) -> Option<Obj> {
        let Body::Plain(json) = &self.json else {
            return None;
        };
        let data = dict.pack(json)?;
        Some(Obj {
            json: Body::Cold {
                data,
                len: u32::try_from(json.len()).ok()?,
                dict: Arc::clone(dict),
            },
            packed: self.packed.clone(),
            ends: self.ends,
            rv: self.rv,
        })
    }

    fn field(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize + 1
        };
        &self.packed[start..self.ends[i] as usize]
    }

    pub fn kind(&self) -> &str {
        self.field(3)
    }

    /// `metadata.namespace`, "" for a cluster-scoped object.
    pub fn namespace(&self) -> &str {
        self.field(0)
    }

    pub fn name(&self) -> &str {
        self.field(1)
    }

    pub fn uid(&self) -> &str {
        self.field(2)
    }

    /// `metadata.resourceVersion`.
    pub fn rv(&self) -> Rv {
        self.rv
    }

    /// `metadata.labels`, in the object's order.
    pub fn labels(&self) -> impl Iterator<Item = (&str, LabelValue<'_>)> + '_ {
        let tail = &self.packed[self.ends[3] as usize..];
        let mut parts = tail.split(SEP).skip(1);
        std::iter::from_fn(move || {
            let key = parts.next()?;
            let tagged = parts.next()?;
            let value = match tagged.strip_prefix('s') {
                Some(v) => LabelValue::Str(v),
                None => LabelValue::NotAString,
            };
            Some((key, value))
        })
    }

    /// One label's value, if the object has the label.
    pub fn label(&self, key: &str) -> Option<LabelValue<'_>> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The labels with the offset each one's key starts at in the packed fields, which
    /// [`Obj::label_at`] reads back (the label index keeps the offset, not the strings).
    pub(crate) fn label_offsets(&self) -> impl Iterator<Item = (u32, &str, LabelValue<'_>)> + '_ {
        let mut at = self.ends[3] as usize;
        std::iter::from_fn(move || {
            if at >= self.packed.len() {
                return None;
            }
            let start = at + 1;
            let (key, value) = self.label_at(u32::try_from(start).ok()?);
            let value_len = match value {
                LabelValue::Str(v) => v.len(),
                LabelValue::NotAString => 0,
            };
            // key, NUL, tag, value
            at = start + key.len() + 2 + value_len;
            Some((start as u32, key, value))
        })
    }

    /// The packed fields (namespace, name, uid, kind, then the labels), for the label
    /// index's entries, which keep offsets into them.
    pub(crate) fn packed_fields(&self) -> &str {
        &self.packed
    }

    /// The label whose key starts at byte `at` of the packed fields (an offset from
    /// [`Obj::label_offsets`]).
    pub(crate) fn label_at(&self, at: u32) -> (&str, LabelValue<'_>) {
        let tail = self.packed.get(at as usize..).unwrap_or("");
        let (key, rest) = tail.split_once(SEP).unwrap_or((tail, ""));
        let tagged = rest.split(SEP).next().unwrap_or("");
        let value = match tagged.strip_prefix('s') {
            Some(v) => LabelValue::Str(v),
            None => LabelValue::NotAString,
        };
        (key, value)
    }

    /// The same object with another `metadata.resourceVersion` (kube sends a deleted or
    /// filtered-out object with the resourceVersion of the event that removed it).
    pub fn with_rv(&self, rv: Rv) -> Obj {
        let mut value = self.value();
        if let Some(meta) = value
            .as_object_mut()
            .and_then(|o| o.get_mut("metadata"))
            .and_then(Value::as_object_mut)
        {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        Obj {
            json: Body::Plain(encode(&value)),
            packed: self.packed.clone(),
            ends: self.ends,
            rv,
        }
    }

    /// Whether a watch's filter (namespace, name, labels: `snapshot::Filter`) decides the
    /// same for both objects: same key and the same labels in the same order.
    pub(crate) fn filters_alike(&self, other: &Obj) -> bool {
        self.key() == other.key()
            && self.packed[self.ends[3] as usize..] == other.packed[other.ends[3] as usize..]
    }

    /// The state's key: [`key_of`] its namespace and name, borrowed from the packed fields.
    pub(crate) fn key(&self) -> &str {
        &self.packed[..self.ends[1] as usize]
    }
}

/// The JSON text in a buffer of exactly its size: `to_vec` grows by doubling, and the
/// spare capacity would otherwise be held for the object's whole life.
fn encode(value: &Value) -> Bytes {
    let mut buf = serde_json::to_vec(value).expect("a Value always serializes");
    buf.shrink_to_fit();
    Bytes::from(buf)
}

fn pack(
    namespace: &str,
    name: &str,
    uid: &str,
    kind: &str,
    labels: Option<&Map<String, Value>>,
) -> (Box<str>, [u32; 4]) {
    // A stray NUL (impossible from PostgreSQL, but `Obj::new` takes any value) would shift
    // the fields; it is dropped rather than trusted.
    let clean = |s: &str| -> String { s.replace(SEP, "") };
    let mut out = String::with_capacity(
        namespace.len()
            + name.len()
            + uid.len()
            + kind.len()
            + 3
            + labels.map_or(0, |l| {
                l.iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len) + 3)
                    .sum()
            }),
    );
    let mut ends = [0u32; 4];
    for (i, f) in [namespace, name, uid, kind].into_iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.push_str(&clean(f));
        ends[i] = u32::try_from(out.len()).unwrap_or(u32::MAX);
    }
    for (k, v) in labels.into_iter().flatten() {
        out.push(SEP);
        out.push_str(&clean(k));
        out.push(SEP);
        match v.as_str() {
            Some(v) => {
                out.push('s');
                out.push_str(&clean(v));
            }
            None => out.push('x'),
        }
    }
    (out.into_boxed_str(), ends)
}

impl fmt::Debug for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Obj({}/{}/{} uid={} rv={})",
            self.kind(),
            self.namespace(),
            self.name(),
            self.uid(),
            self.rv
        )
    }
}

/// One row change of a committed transaction, as the change stream decoded it.
#[derive(Debug, Clone)]
pub enum Change {
    /// The row is live with this content (insert or update).
    Put(Arc<Obj>),
    /// The row was soft-deleted; the object is its final state, with the delete's rv.
    Delete(Arc<Obj>),
}

impl Change {
    pub fn object(&self) -> &Arc<Obj> {
        match self {
            Change::Put(o) | Change::Delete(o) => o,
        }
    }

    pub fn kind(&self) -> &str {
        self.object().kind()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object as the state decided it, shared by every watcher of the kind.
pub struct Event {
    ty: EventType,
    rv: Rv,
    obj: Arc<Obj>,
    /// The state before the change, kept only when what a watch filters by (namespace,
    /// name, labels) differs from `obj`'s: only then can a watcher's selector have matched
    /// one and not the other, or be sent the previous state as a DELETED. Keeping it for
    /// every change held the old version of every object a backfill rewrote for as long as
    /// the history kept its events (a second copy of the state).
    prev: Option<Arc<Obj>>,
    /// Whether there was a previous state (MODIFIED and DELETED), kept or not.
    had_prev: bool,
    at: Instant,
    prev_at_rv: OnceLock<Arc<Obj>>,
    encodings: Encodings,
}

impl Event {
    pub(crate) fn new(
        ty: EventType,
        rv: Rv,
        obj: Arc<Obj>,
        prev: Option<Arc<Obj>>,
        at: Instant,
    ) -> Event {
        let had_prev = prev.is_some();
        let prev = prev.filter(|p| !p.filters_alike(&obj));
        Event {
            ty,
            rv,
            obj,
            prev,
            had_prev,
            at,
            prev_at_rv: OnceLock::new(),
            encodings: Encodings::default(),
        }
    }

    pub fn ty(&self) -> EventType {
        self.ty
    }

    /// The resourceVersion of the change, the event's position in the history.
    pub fn rv(&self) -> Rv {
        self.rv
    }

    /// The new state; for DELETED the final state.
    pub fn object(&self) -> &Arc<Obj> {
        &self.obj
    }

    /// The state before the change (MODIFIED and DELETED), when its namespace, name or
    /// labels differ from the new state's (see the field).
    pub fn prev(&self) -> Option<&Arc<Obj>> {
        self.prev.as_ref()
    }

    /// Whether the state before the change passed `filter`, which may look only at what
    /// [`Obj::filters_alike`] compares: false when there was none (ADDED).
    pub(crate) fn prev_passes(&self, filter: impl Fn(&Obj) -> bool) -> bool {
        match (&self.prev, self.had_prev) {
            (Some(prev), _) => filter(prev),
            // Dropped because it filters as the new state does.
            (None, true) => filter(&self.obj),
            (None, false) => false,
        }
    }

    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// The rv a watcher has fully processed once it has seen (or skipped) this event: the
    /// rv its object carries. Equal to `rv` except for the DELETED half of a uid change,
    /// whose object says `rv - 1` so that resuming from it replays the ADDED half.
    pub(crate) fn progress_rv(&self) -> Rv {
        self.obj.rv()
    }

    /// The previous state at this event's rv: what a watcher whose selector the object
    /// stopped matching is sent as DELETED (kube's cacher does the same).
    pub(crate) fn prev_at_rv(&self) -> Option<&Arc<Obj>> {
        let prev = self.prev.as_ref()?;
        Some(
            self.prev_at_rv
                .get_or_init(|| Arc::new(prev.with_rv(self.rv))),
        )
    }

    pub(crate) fn projected(
        &self,
        key: u8,
        ty: EventType,
        from_prev: bool,
        make: impl FnOnce() -> Frame,
    ) -> Frame {
        let variant = if from_prev {
            Variant::PrevAtRv(ty)
        } else {
            Variant::Stored(ty)
        };
        self.encodings.get_or_make(slot(key, variant), make)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} @{} {:?}", self.ty.as_str(), self.rv, self.obj)
    }
}

#[derive(Clone, Copy)]
enum Variant {
    Stored(EventType),
    PrevAtRv(EventType),
}

fn slot(key: u8, variant: Variant) -> u16 {
    let t = |ty: EventType| ty as u16;
    let v = match variant {
        Variant::Stored(ty) => 2 + t(ty),
        Variant::PrevAtRv(ty) => 5 + t(ty),
    };
    (u16::from(key) << 8) | v
}

/// Encodings made on demand, each exactly once: concurrent callers of one slot wait for
/// the first maker instead of encoding again.
#[derive(Default)]
struct Encodings(Mutex<Vec<(u16, Arc<OnceLock<Frame>>)>>);

/// An event encoded for the wire, or why it could not be. A failure is kept like a
/// success: the same input fails the same way for every watcher.
pub type Frame = Result<Bytes, EncodeError>;

/// Why an event could not be encoded in a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub Arc<str>);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl Encodings {
    fn get_or_make(&self, slot: u16, make: impl FnOnce() -> Frame) -> Frame {
        let cell = {
            let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match slots.iter().find(|(s, _)| *s == slot) {
                Some((_, cell)) => Arc::clone(cell),
                None => {
                    let cell = Arc::new(OnceLock::new());
                    slots.push((slot, Arc::clone(&cell)));
                    cell
                }
            }
        };
        cell.get_or_init(make).clone()
    }
}
