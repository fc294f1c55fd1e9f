//! Stored objects, the changes the writer applies and the events watchers read.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value};

/// A resourceVersion: global, one per row change, increasing in commit order.
pub type Rv = u64;

/// One live (or, in a DELETED event, final) object, serialized once.
///
/// Built by the change stream (or the seed) and shared by the snapshot, the history and
/// every watcher through `Arc<Obj>`; it never changes after construction.
///
/// Only the JSON text is kept, with the few fields the cache indexes and filters by. A
/// parsed `serde_json::Value` tree costs about eight times its JSON in memory (a map
/// entry, a hash slot and a heap string per key), and the state holds every live object:
/// with the tree, 10,000 Queries took 114 MiB for 6.9 MiB of JSON. The tree is rebuilt on
/// demand by [`Obj::value`], for the rarer paths that need it (Table rendering, YAML).
pub struct Obj {
    json: Bytes,
    labels: Option<Map<String, Value>>,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    rv: Rv,
    encodings: Encodings,
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
        let text = |m: &Map<String, Value>, k: &str| {
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
        let labels = meta.get("labels").and_then(Value::as_object).cloned();
        let json = Bytes::from(serde_json::to_vec(&value).expect("a Value always serializes"));
        let obj = Obj {
            json,
            labels,
            kind,
            namespace,
            name,
            uid,
            rv: rv.unwrap_or(0),
            encodings: Encodings::default(),
        };
        (obj, problem)
    }

    /// The complete object, parsed from its JSON (which was made from a `Value`, so this
    /// cannot fail but for a bug; a `Null` then stands in, rather than a panic).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or_else(|e| {
            tracing::error!(error = %e, obj = ?self, "a stored object's JSON does not parse");
            Value::Null
        })
    }

    /// The object serialized as JSON, computed once when it was built.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `metadata.namespace`, "" for a cluster-scoped object.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// `metadata.resourceVersion`.
    pub fn rv(&self) -> Rv {
        self.rv
    }

    pub fn labels(&self) -> Option<&Map<String, Value>> {
        self.labels.as_ref()
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
        let json = Bytes::from(serde_json::to_vec(&value).expect("a Value always serializes"));
        Obj {
            json,
            labels: self.labels.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            rv,
            encodings: Encodings::default(),
        }
    }

    pub(crate) fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    pub(crate) fn initial_frame(&self, key: u8, make: impl FnOnce() -> Frame) -> Frame {
        self.encodings
            .get_or_make(slot(key, Variant::InitialAdded), make)
    }
}

impl fmt::Debug for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Obj({}/{}/{} uid={} rv={})",
            self.kind, self.namespace, self.name, self.uid, self.rv
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
    prev: Option<Arc<Obj>>,
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
        Event {
            ty,
            rv,
            obj,
            prev,
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

    /// The state before the change (MODIFIED and DELETED).
    pub fn prev(&self) -> Option<&Arc<Obj>> {
        self.prev.as_ref()
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
    InitialAdded,
    Stored(EventType),
    PrevAtRv(EventType),
}

fn slot(key: u8, variant: Variant) -> u16 {
    let t = |ty: EventType| ty as u16;
    let v = match variant {
        Variant::InitialAdded => 1,
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
