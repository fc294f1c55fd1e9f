//! GET and LIST from the in-memory state, with kube's resourceVersion rules.
//!
//! A read with no resourceVersion is consistent: it reflects every write acknowledged
//! before the request began. The state is fed by the replication stream, so the read first
//! makes sure the stream has passed the database's current WAL position: it writes a
//! logical message (a few bytes of WAL) and waits until the stream has delivered it. Every
//! commit acknowledged before the request precedes that message in the WAL, and logical
//! decoding delivers in WAL order.
//!
//! **Reading instead of writing, when that proves as much.** The message costs a commit
//! (an fsync) and a trip through decoding, most of a GET's time. On the replica that holds
//! the slot, a read first asks the database for the resourceVersion counter and whether
//! this replica's walsender holds the slot there ([`Store::probe_read_point`]; once the
//! session has learned its walsender's pid, whether that walsender still runs,
//! [`Store::probe_read_point_by_walsender`], which costs about a third as much on the
//! database: a walsender keeps the slot it streams from until it exits). If it does
//! and the state has applied up to the counter, nothing acknowledged is missing and no
//! message is written; otherwise (writes in flight, a follower, a stream attached to
//! another server) the round writes its message as before.
//!
//! **Sharing one round trip without queueing.** Readers join a *round*: the round's
//! emitter writes the message once and publishes its position to every reader that joined
//! before the message was written (a reader that joins later needs a later message, and
//! starts or joins the next round). Only the emission is serialised, so that readers
//! arriving during one share the next; the wait for the stream is each reader's own, with
//! its own deadline. A stalled stream therefore costs each read at most its timeout, never
//! the timeouts of the reads ahead of it. The emission runs as its own task, so a reader
//! that gives up (or whose client disconnects) never strands the others.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::errors::{expired_continue, storage_unavailable, too_large};
use super::options::{self, ListOptions};
use super::{ListResult, Registry};
use crate::cdc::status::StreamStatus;
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::ApiError;
use crate::store::{Store, StoreError, SyncMark};
use crate::watch::{Obj, State};

/// How long a consistent read waits for its round trip before giving up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replica that found itself not holding the slot skips the probe: a follower
/// then pays one probe a second rather than one per read, and a follower that becomes the
/// leader starts proving read points by the counter within this long.
const UNATTACHED_PAUSE: Duration = Duration::from_secs(1);
/// How long a read of resourceVersion N waits for the state to reach N (kube: 3 s).
const TOO_NEW_WAIT: Duration = Duration::from_secs(3);

/// Where a round found the read point.
#[derive(Debug, Clone)]
enum ReadPoint {
    /// The state had already applied everything committed before the round began.
    Reached,
    /// The message written; the state reflects every earlier commit once it passes it.
    Mark(SyncMark),
}

type RoundResult = Option<Result<ReadPoint, StoreError>>;

/// The slot and this replica's replication application name, for the probe.
#[derive(Debug, Clone)]
pub struct StreamIdentity {
    pub slot: String,
    pub application_name: String,
}

struct Rounds {
    store: Arc<Store>,
    state: Arc<State>,
    status: Arc<StreamStatus>,
    identity: Mutex<Option<StreamIdentity>>,
    /// When a probe last found this replica's walsender not holding the slot (a follower):
    /// for [`UNATTACHED_PAUSE`] after that, rounds write their message without probing.
    unattached_at: Mutex<Option<Instant>>,
    /// The round readers arriving now join; its emitter takes it out when it writes.
    open: Mutex<Option<watch::Sender<RoundResult>>>,
    /// Held while a message is being written.
    emitting: tokio::sync::Mutex<()>,
}

pub struct Syncer {
    state: Arc<State>,
    status: Arc<StreamStatus>,
    rounds: Arc<Rounds>,
}

impl Syncer {
    pub fn new(store: Arc<Store>, state: Arc<State>, status: Arc<StreamStatus>) -> Self {
        Syncer {
            state: Arc::clone(&state),
            status: Arc::clone(&status),
            rounds: Arc::new(Rounds {
                store,
                state,
                status,
                identity: Mutex::new(None),
                unattached_at: Mutex::new(None),
                open: Mutex::new(None),
                emitting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Lets rounds probe before they write (see the module's documentation).
    pub fn set_identity(&self, identity: StreamIdentity) {
        *self
            .rounds
            .identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(identity);
    }

    /// Returns once the state reflects every commit made before this call: 503 while the
    /// stream is not serving, 504 when it does not catch up within the timeout.
    pub async fn sync(&self) -> Result<(), ApiError> {
        self.serving()?;
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut round = self.join();
        let mark = match tokio::time::timeout_at(deadline, round.wait_for(Option::is_some)).await {
            Ok(Ok(r)) => r.clone(),
            // The emitter is gone without an answer: only a runtime shutting down does that.
            Ok(Err(_)) => None,
            Err(_) => return Err(self.timed_out(None)),
        };
        let mark = match mark {
            Some(Ok(ReadPoint::Reached)) => {
                metrics::counter!("ark_consistent_read_probes_total").increment(1);
                return Ok(());
            }
            Some(Ok(ReadPoint::Mark(m))) => m,
            Some(Err(e)) => return Err(storage_unavailable(&e)),
            None => return Err(self.timed_out(None)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if self.state.wait_for_lsn(mark.lsn, left).await {
            metrics::counter!("ark_consistent_read_syncs_total").increment(1);
            Ok(())
        } else {
            Err(self.timed_out(Some(mark)))
        }
    }

    /// 503 unless the stream is up and caught up (the readiness condition).
    fn serving(&self) -> Result<(), ApiError> {
        self.status.check().map_err(|why| {
            ApiError::service_unavailable(format!(
                "the change stream from PostgreSQL is not ready: {why}"
            ))
        })
    }

    /// 503 when the stream went down meanwhile, else kube's 504 for a cache that did not
    /// catch up with the store.
    fn timed_out(&self, mark: Option<SyncMark>) -> ApiError {
        if let Err(e) = self.serving() {
            return e;
        }
        match mark {
            Some(m) => too_large(m.resource_version, self.state.rv()),
            None => ApiError::timeout(
                "PostgreSQL did not confirm the read point in time; retry",
                1,
            ),
        }
    }

    /// The round this reader waits on: the open one, or a new one whose emitter starts now.
    fn join(&self) -> watch::Receiver<RoundResult> {
        let mut open = self
            .rounds
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = open.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        *open = Some(tx.clone());
        drop(open);
        tokio::spawn(emit(Arc::clone(&self.rounds), tx));
        rx
    }
}

/// Writes one round's message after the previous one is written, and publishes where it is.
async fn emit(rounds: Arc<Rounds>, tx: watch::Sender<RoundResult>) {
    let _one_at_a_time = rounds.emitting.lock().await;
    {
        // From here on, a reader that arrives needs a later message: close the round.
        let mut open = rounds.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.as_ref().is_some_and(|o| o.same_channel(&tx)) {
            *open = None;
        }
    }
    let result = match tokio::time::timeout(SYNC_TIMEOUT, read_point(&rounds)).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Internal(
            "writing the read point did not finish in time".into(),
        )),
    };
    tx.send_replace(Some(result));
}

/// The probe, and the message when the probe does not prove the read point.
async fn read_point(rounds: &Rounds) -> Result<ReadPoint, StoreError> {
    let identity = rounds
        .identity
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let paused = rounds
        .unattached_at
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some_and(|at| at.elapsed() < UNATTACHED_PAUSE);
    let walsender = rounds.status.walsender();
    if let (Some(id), false) = (identity, paused) {
        let (counter, attached) = match walsender {
            Some(w) => {
                rounds
                    .store
                    .probe_read_point_by_walsender(w.pid, w.server_started_us)
                    .await?
            }
            None => {
                rounds
                    .store
                    .probe_read_point(&id.slot, &id.application_name)
                    .await?
            }
        };
        // Read after the probe answered: the state only moves forward within a session,
        // and a re-seed onto another history first makes the stream not serving.
        if attached && rounds.state.rv() >= counter {
            return Ok(ReadPoint::Reached);
        }
        if !attached {
            *rounds
                .unattached_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
    rounds.store.emit_sync_message().await.map(ReadPoint::Mark)
}

impl Registry {
    /// GET from memory: consistent without a resourceVersion, from any state with "0",
    /// and not older than N otherwise.
    pub async fn get(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        rv: Option<&str>,
    ) -> Result<Arc<Obj>, ApiError> {
        self.read_point(rv).await?;
        self.state
            .get(&def.kind, ns, name)
            .ok_or_else(|| ApiError::not_found(def.resource_ref(), name))
    }

    /// Makes the state at least as new as the read asks for. A state that was never seeded
    /// serves nothing: its resourceVersion would claim a point it has not seen.
    pub async fn read_point(&self, rv: Option<&str>) -> Result<(), ApiError> {
        if !self.state.is_seeded() {
            return Err(ApiError::service_unavailable(
                "the change stream from PostgreSQL is not ready: the state is not loaded yet",
            ));
        }
        match rv {
            None => self.syncer.sync().await,
            Some("0") => Ok(()),
            Some(n) => {
                let n: u64 = n.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {n:?}"))
                })?;
                if self.state.wait_for_rv(n, TOO_NEW_WAIT).await {
                    Ok(())
                } else {
                    Err(too_large(n, self.state.rv()))
                }
            }
        }
    }

    /// LIST from memory, paging through one snapshot with continue tokens.
    pub async fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let token = opts
            .continue_token
            .as_deref()
            .map(options::ContinueToken::decode)
            .transpose()?;
        let snap = match &token {
            Some(t) if t.resource_version <= 0 => {
                self.read_point(Some("0")).await?;
                self.state.snapshot()
            }
            Some(t) => match self.state.snapshot_at(t.resource_version as u64) {
                Some(s) => s,
                None => return Err(expired_continue(t)),
            },
            None => match (
                opts.resource_version.as_deref(),
                opts.resource_version_match.as_deref(),
            ) {
                (Some(n), Some("Exact")) => {
                    self.read_point(Some("0")).await?;
                    let n: u64 = n.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version {n:?}"))
                    })?;
                    let current = self.state.snapshot();
                    if current.rv() == n {
                        current
                    } else {
                        self.state.snapshot_at(n).ok_or_else(|| {
                            ApiError::gone(format!(
                                "too old resource version: {n} ({})",
                                current.rv()
                            ))
                        })?
                    }
                }
                (rv, _) => {
                    self.read_point(rv).await?;
                    self.state.snapshot()
                }
            },
        };
        let after = token
            .as_ref()
            .map(|t| (t.namespace.as_str(), t.name.as_str()));
        let offset = match &token {
            Some(t) => t.offset,
            None => Some(0),
        };
        let (items, more, remaining) = snap.list_from(
            &def.kind,
            ns,
            &opts.labels,
            &opts.fields,
            after,
            offset,
            opts.limit,
        );
        let rv = snap.rv();
        let continue_token = if more {
            items.last().map(|o| {
                options::ContinueToken {
                    resource_version: rv as i64,
                    namespace: o.namespace().to_string(),
                    name: o.name().to_string(),
                    offset: offset.map(|n| n + items.len() as u64),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(ListResult {
            items,
            resource_version: rv.to_string(),
            continue_token,
            remaining: (more && opts.labels.is_empty() && opts.fields.is_empty())
                .then_some(remaining as i64),
        })
    }
}

/// The list metadata kube writes: resourceVersion, continue, remainingItemCount.
pub fn list_meta(r: &ListResult) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(r.resource_version));
    if let Some(c) = &r.continue_token {
        meta.insert("continue".into(), json!(c));
    }
    if let Some(n) = r.remaining {
        meta.insert("remainingItemCount".into(), json!(n));
    }
    meta
}

/// A list of `def`'s list kind, written from each object's JSON serialized once when it
/// entered the state: no per-request serialization of the items.
pub fn list_json(def: &ResourceDef, r: &ListResult) -> Vec<u8> {
    let head =
        json!({"apiVersion": def.api_version, "kind": def.list_kind, "metadata": list_meta(r)})
            .to_string();
    let size: usize = r.items.iter().map(|o| o.json_len() + 1).sum();
    let mut out = Vec::with_capacity(head.len() + size + 16);
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in r.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        o.with_json(|j| out.extend_from_slice(j));
    }
    out.extend_from_slice(b"]}");
    out
}

/// The bytes of [`list_json`], made as they are sent, in chunks of about `LIST_CHUNK`: a
/// LIST of every object needs memory for one chunk, not for a copy of every object's JSON.
/// The items are the state's own objects, kept alive by the iterator until they are sent.
pub fn list_json_chunks(
    def: &ResourceDef,
    r: ListResult,
) -> impl Iterator<Item = bytes::Bytes> + Send + 'static {
    let head =
        json!({"apiVersion": def.api_version, "kind": def.list_kind, "metadata": list_meta(&r)})
            .to_string();
    let mut first = Vec::with_capacity(head.len() + 10);
    first.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    first.extend_from_slice(b",\"items\":[");
    let mut items = r.items.into_iter().enumerate();
    let mut pending = Some(first);
    std::iter::from_fn(move || {
        let mut out = pending.take()?;
        while out.len() < LIST_CHUNK {
            match items.next() {
                Some((i, o)) => {
                    if i > 0 {
                        out.push(b',');
                    }
                    o.with_json(|j| out.extend_from_slice(j));
                }
                None => {
                    out.extend_from_slice(b"]}");
                    return Some(bytes::Bytes::from(out));
                }
            }
        }
        // Full; the close, if no item is left, goes in the next chunk.
        pending = Some(Vec::with_capacity(LIST_CHUNK + 4096));
        Some(bytes::Bytes::from(out))
    })
}

/// The size of a streamed LIST's chunks.
pub const LIST_CHUNK: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn result(n: usize, size: usize) -> ListResult {
        let items = (0..n)
            .map(|i| {
                Arc::new(Obj::new(json!({
                    "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Query",
                    "metadata": {"name": format!("q{i}"), "namespace": "ns", "uid": format!("u{i}"), "resourceVersion": (i + 2).to_string()},
                    "spec": {"input": "x".repeat(size)}
                })))
            })
            .collect();
        ListResult {
            items,
            resource_version: "99".into(),
            continue_token: Some("next".into()),
            remaining: Some(3),
        }
    }

    #[test]
    fn a_streamed_list_is_byte_for_byte_the_list_in_bounded_chunks() {
        let def = crate::k8s::resource::Resources::builtin()
            .unwrap()
            .get("v1alpha1", "queries")
            .cloned()
            .unwrap();
        // Empty, one small chunk, and many chunks (one of them ending exactly on the last item).
        for (n, size) in [(0, 10), (3, 10), (2_000, 900), (4, LIST_CHUNK)] {
            let r = result(n, size);
            let whole = list_json(&def, &r);
            let chunks: Vec<bytes::Bytes> = list_json_chunks(&def, r).collect();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, whole, "{n} items of {size} bytes");
            assert!(
                chunks.iter().all(|c| c.len() <= 2 * LIST_CHUNK + size + 64),
                "no chunk much larger than LIST_CHUNK plus one item"
            );
            let v: Value = serde_json::from_slice(&joined).unwrap();
            assert_eq!(v["items"].as_array().unwrap().len(), n);
            assert_eq!(v["metadata"]["continue"], "next");
        }
    }
}
