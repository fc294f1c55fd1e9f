//! WATCH over chunked HTTP: one JSON event per line, as kube-apiserver streams them.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Map};

use super::negotiate::{Output, Shape};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{ApiError, Details};
use crate::k8s::table::{self, IncludeObject};
use crate::registry::ListOptions;
use crate::watch::{
    EncodeError, EventType, Frame, Obj, Start, State, Watch, WatchEnd, WatchError, WatchItem,
    WatchRequest,
};

/// How long a watch from a resourceVersion the state has not reached waits for it (kube: 3 s).
const TOO_NEW_WAIT: Duration = Duration::from_secs(3);
/// Bookmarks at least this often, when the client allows them (kube: about once a minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(50);
/// kube's default minimum request timeout; a watch without timeoutSeconds lasts between
/// one and two of these, randomized so that reconnects of many clients spread out.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// Keys for the per-event encoding cache, one per computed wire format (plain JSON is
/// written from the object's stored JSON, see `item_into`).
const ENC_TABLE_V1: u8 = 2;
const ENC_TABLE_V1BETA1: u8 = 3;
const ENC_META_V1: u8 = 4;
const ENC_META_V1BETA1: u8 = 5;

/// Opens a watch and returns the streaming response, or the Status for a request that
/// cannot start (too large a resourceVersion: 504, as kube).
/// `shutdown` turning true ends the watch at once (with a last bookmark when the client
/// allows them), so that a server stopping never waits on its watchers.
pub async fn serve(
    state: &Arc<State>,
    def: Arc<ResourceDef>,
    namespace: Option<&str>,
    opts: ListOptions,
    out: Output,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<HttpResponse, ApiError> {
    let parse = |rv: &str| {
        rv.parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))
    };
    let start = match (opts.send_initial_events, opts.resource_version.as_deref()) {
        // WatchList: the state (at least as new as the resourceVersion, which the caller
        // waited for), then the initial-events-end bookmark, then changes.
        (Some(true), _) => Start::InitialState,
        // Explicitly no initial state: changes after the given point, or from now.
        (Some(false), None) | (Some(false), Some("0")) => Start::Now,
        (Some(false), Some(rv)) => Start::From(parse(rv)?),
        // Legacy semantics: synthetic ADDED for the current state, then changes.
        (None, None) | (None, Some("0")) => Start::InitialState,
        (None, Some(rv)) => Start::From(parse(rv)?),
    };
    let announce_initial_end = opts.send_initial_events == Some(true);
    let req = WatchRequest {
        kind: def.kind.clone(),
        namespace: namespace.map(str::to_string),
        labels: opts.labels.clone(),
        fields: opts.fields.clone(),
        start,
    };
    let timeout = match opts.timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => {
            MIN_REQUEST_TIMEOUT
                + Duration::from_secs(rand::random::<u64>() % MIN_REQUEST_TIMEOUT.as_secs())
        }
    };
    let content_type = out.content_type();
    let first: Option<Bytes> = match state.watch(req, TOO_NEW_WAIT).await {
        Ok(w) => {
            let now = tokio::time::Instant::now();
            let stream = stream(Streaming {
                w,
                def,
                out,
                bookmarks: opts.allow_watch_bookmarks,
                announce_initial_end,
                deadline: now + timeout,
                next_bookmark: now + BOOKMARK_EVERY,
                shutdown,
                done: false,
            });
            return Ok(HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, content_type))
                .insert_header((header::CACHE_CONTROL, "no-cache, private"))
                .streaming(stream));
        }
        Err(WatchError::TooNew { requested, current }) => {
            return Err(crate::registry::too_large(requested, current))
        }
        Err(WatchError::TooOld { requested, oldest }) => {
            metrics::counter!("ark_watch_gone_total").increment(1);
            Some(expired_event(requested, oldest))
        }
    };
    // kube answers a too-old resourceVersion with 200 and an ERROR event, then ends.
    let body = first.unwrap_or_default();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body))
}

fn expired_event(requested: u64, oldest: u64) -> Bytes {
    error_event(&ApiError::gone(format!(
        "too old resource version: {requested} ({oldest})"
    )))
}

/// `{"type":"ERROR","object":<Status>}\n`: how a watch ends with a reason.
fn error_event(e: &ApiError) -> Bytes {
    let mut b = json!({"type": "ERROR", "object": e.to_status()}).to_string();
    b.push('\n');
    Bytes::from(b)
}

/// One JSON line. Serializing can fail only for values that are not JSON at all; such a
/// failure ends the watch with an ERROR event instead of sending a broken line.
fn line<T: serde::Serialize + ?Sized>(v: &T) -> Frame {
    let mut b = serde_json::to_vec(v).map_err(|e| EncodeError(e.to_string().into()))?;
    b.push(b'\n');
    Ok(Bytes::from(b))
}

fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Added => "ADDED",
        EventType::Modified => "MODIFIED",
        EventType::Deleted => "DELETED",
    }
}

/// Appends `{"type":T,"object":<obj>}\n`, from the object's JSON serialized once at apply
/// time.
fn write_json_event(buf: &mut BytesMut, t: EventType, obj: &Obj) {
    buf.reserve(obj.json_len() + 32);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(type_name(t).as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    obj.with_json(|j| buf.extend_from_slice(j));
    buf.extend_from_slice(b"}\n");
}

fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if initial_end {
        meta.insert(
            "annotations".into(),
            json!({"k8s.io/initial-events-end": "true"}),
        );
    }
    let mut b = json!({"type": "BOOKMARK", "object": {"apiVersion": def.api_version, "kind": def.kind, "metadata": meta}}).to_string();
    b.push('\n');
    Bytes::from(b)
}

/// Everything one watch response carries between items.
struct Streaming {
    w: Watch,
    def: Arc<ResourceDef>,
    out: Output,
    bookmarks: bool,
    announce_initial_end: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
    /// The server is stopping.
    shutdown: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

fn stream(s: Streaming) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    futures_util::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        let b = next_chunk(&mut s).await?;
        Some((Ok::<_, actix_web::Error>(b), s))
    })
}

/// At most this many bytes of ready items go out as one chunk.
const COALESCE_MAX: usize = 64 * 1024;

/// The next bytes to send, or `None` when the response ends.
///
/// When more items are ready than the one awaited (a watcher behind by a few events, or
/// the initial state), they go out together, up to [`COALESCE_MAX`]: one chunk, one TLS
/// record and one write instead of one each. With 200 watchers at 1,000 events/s that is
/// most of the server's cost per event, and it is when watchers are behind that it counts.
/// Clients read the stream as a sequence of JSON values; chunk boundaries mean nothing.
async fn next_chunk(s: &mut Streaming) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    next_item_into(s, &mut buf).await?;
    while !s.done && buf.len() < COALESCE_MAX {
        let Some(item) = s.w.try_next() else { break };
        item_into(s, item, &mut buf);
    }
    Some(buf.freeze())
}

/// Appends the bytes of one watch item to `buf`; returns whether it sent anything (a
/// bookmark the client did not ask for sends nothing). Sets `done` when the response ends
/// with it.
///
/// An event in plain JSON is written from the object's stored JSON between its type and
/// the closing brace, for each watcher: no frame is kept on the event. Kept, the frames of
/// a 200,000-row transaction would be a second copy of its objects for as long as the
/// history holds them, while writing one is a copy of bytes TLS then copies again anyway.
fn item_into(s: &mut Streaming, item: WatchItem, buf: &mut BytesMut) -> bool {
    let bytes = match item {
        WatchItem::Event(ev) if s.out.shape == Shape::Plain => {
            write_json_event(buf, ev.ty(), ev.object());
            None
        }
        WatchItem::Event(ev) => {
            let (bytes, last) = frame_or_end(encode(&ev, &s.def, s.out), &s.def);
            s.done |= last;
            Some(bytes)
        }
        WatchItem::Bookmark(rv) => {
            if !s.bookmarks {
                return false;
            }
            Some(bookmark(&s.def, rv, false))
        }
        WatchItem::InitialEventsEnd(rv) => {
            if !s.announce_initial_end {
                return false;
            }
            Some(bookmark(&s.def, rv, true))
        }
        WatchItem::Error(WatchEnd::Expired { requested, oldest }) => {
            metrics::counter!("ark_watch_gone_total").increment(1);
            s.done = true;
            Some(expired_event(requested, oldest))
        }
        WatchItem::Error(WatchEnd::TooSlow) => {
            metrics::counter!("ark_watch_slow_closed_total").increment(1);
            s.done = true;
            // Not 410: the client resumes from the last resourceVersion it saw, which the
            // history still holds, instead of relisting.
            let mut e = ApiError::timeout(
                "watch closed: the client did not keep up with the events; resume from the last resourceVersion received",
                1,
            );
            e.details = Some(Box::new(Details {
                retry_after_seconds: Some(1),
                ..Default::default()
            }));
            Some(error_event(&e))
        }
    };
    if let Some(b) = bytes {
        buf.extend_from_slice(&b);
    }
    if s.w.is_ended() {
        s.done = true;
    }
    true
}

/// Appends the next item that sends anything to `buf`, waiting for it; `None` when the
/// response ends with nothing more to send.
async fn next_item_into(s: &mut Streaming, buf: &mut BytesMut) -> Option<()> {
    loop {
        let item = tokio::select! {
            item = s.w.next() => item?,
            _ = tokio::time::sleep_until(s.next_bookmark), if s.bookmarks => {
                s.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                s.w.request_bookmark();
                continue;
            }
            _ = tokio::time::sleep_until(s.deadline) => {
                // A last bookmark, so the client resumes from the newest point.
                s.done = true;
                let rv = s.w.bookmark_rv().filter(|_| s.bookmarks)?;
                buf.extend_from_slice(&bookmark(&s.def, rv, false));
                return Some(());
            }
            _ = s.shutdown.wait_for(|stopping| *stopping) => {
                // The server is stopping: end the response cleanly, as at the timeout, and
                // the client resumes (from another replica, or this one once it is back).
                s.done = true;
                let rv = s.w.bookmark_rv().filter(|_| s.bookmarks)?;
                buf.extend_from_slice(&bookmark(&s.def, rv, false));
                return Some(());
            }
        };
        if item_into(s, item, buf) {
            return Some(());
        }
        if s.done {
            return None;
        }
    }
}

/// The bytes to send for an encoded event, and whether the watch ends with them: an event
/// that could not be encoded ends the watch with an ERROR event (500) rather than a broken
/// or empty line, and the cause is logged. The client resumes from its last resourceVersion.
fn frame_or_end(frame: Frame, def: &ResourceDef) -> (Bytes, bool) {
    match frame {
        Ok(b) => (b, false),
        Err(e) => {
            tracing::error!(error = %e, kind = %def.kind, "a watch event could not be encoded; ending the watch");
            let status = ApiError::internal(format!("the watch event could not be encoded: {e}"));
            (error_event(&status), true)
        }
    }
}

fn encode(ev: &crate::watch::WatchEvent, def: &ResourceDef, out: Output) -> Frame {
    match out.shape {
        Shape::Table(version) => {
            let key = if version == "v1" {
                ENC_TABLE_V1
            } else {
                ENC_TABLE_V1BETA1
            };
            ev.encoded(key, |t, obj| {
                // A single object's Table carries its resourceVersion, as kube's converter does.
                let mut meta = Map::new();
                meta.insert("resourceVersion".into(), json!(obj.rv().to_string()));
                let tbl = table::render(
                    &def.printer_columns,
                    std::iter::once(&obj.value()),
                    meta,
                    IncludeObject::Metadata,
                    version,
                    chrono::Utc::now(),
                );
                line(&json!({"type": type_name(t), "object": tbl}))
            })
        }
        Shape::PartialMetadata(version) => {
            let key = if version == "v1" {
                ENC_META_V1
            } else {
                ENC_META_V1BETA1
            };
            // Encoded once per event and shared, like the other formats: controllers that
            // watch metadata only (garbage collector, quota) are often many.
            ev.encoded(key, |t, obj| {
                line(&json!({"type": type_name(t), "object": table::partial_object_metadata(&obj.value(), version)}))
            })
        }
        Shape::Plain => {
            let mut buf = BytesMut::new();
            write_json_event(&mut buf, ev.ty(), ev.object());
            Ok(buf.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_cannot_be_encoded_ends_the_watch_with_an_error_event() {
        let def = crate::k8s::resource::Resources::builtin()
            .unwrap()
            .get("v1alpha1", "agents")
            .cloned()
            .unwrap();
        let (bytes, last) = frame_or_end(Err(EncodeError("no wire form".into())), &def);
        assert!(last, "the watch ends after the ERROR event");
        assert!(bytes.ends_with(b"\n"));
        let ev: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ev["type"], "ERROR");
        assert_eq!(ev["object"]["kind"], "Status");
        assert_eq!(ev["object"]["code"], 500);
        assert_eq!(ev["object"]["reason"], "InternalError");
        assert!(ev["object"]["message"]
            .as_str()
            .unwrap()
            .contains("no wire form"));
        let (ok, last) = frame_or_end(Ok(Bytes::from_static(b"{}\n")), &def);
        assert_eq!((ok.as_ref(), last), (&b"{}\n"[..], false));
    }

    #[test]
    fn a_line_of_an_unencodable_value_is_an_error_not_an_empty_line() {
        struct Unencodable;
        impl serde::Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no wire form"))
            }
        }
        assert!(line(&Unencodable).is_err());
        assert_eq!(line(&json!({"a": 1})).unwrap().as_ref(), b"{\"a\":1}\n");
    }
    /// A watch of Agents from now, with `events` committed after it, as the response's
    /// stream state.
    fn streaming_with(events: usize, pad: usize) -> Streaming {
        use crate::k8s::selector::{FieldSelector, LabelSelector};
        use crate::watch::{Change, Config, Obj, Start, State, WatchRequest};
        let state = State::new(Config::default());
        state.reset(Vec::new(), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let w = rt
            .block_on(state.watch(
                WatchRequest {
                    kind: "Agent".into(),
                    namespace: None,
                    labels: LabelSelector::everything(),
                    fields: FieldSelector::default(),
                    start: Start::Now,
                },
                std::time::Duration::ZERO,
            ))
            .unwrap();
        for i in 1..=events {
            let v = json!({
                "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                "metadata": {"name": format!("a{i}"), "namespace": "ns", "uid": format!("u{i}"), "resourceVersion": i.to_string()},
                "spec": {"prompt": "x".repeat(pad)},
            });
            state.apply(vec![Change::Put(Arc::new(Obj::try_new(v).unwrap()))]);
        }
        let def = crate::k8s::resource::Resources::builtin()
            .unwrap()
            .get("v1alpha1", "agents")
            .cloned()
            .unwrap();
        let now = tokio::time::Instant::now();
        // A dropped sender reads as "stopping"; the test's server never stops.
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        std::mem::forget(tx);
        Streaming {
            w,
            def,
            out: Output {
                encoding: super::super::negotiate::Encoding::Json,
                shape: Shape::Plain,
            },
            bookmarks: false,
            announce_initial_end: false,
            deadline: now + std::time::Duration::from_secs(60),
            next_bookmark: now + BOOKMARK_EVERY,
            shutdown,
            done: false,
        }
    }

    fn lines(b: &[u8]) -> Vec<String> {
        b.split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                format!(
                    "{} {}",
                    v["type"].as_str().unwrap(),
                    v["object"]["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn events_ready_together_go_out_as_one_chunk_in_order() {
        let mut s = streaming_with(3, 10);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let chunk = rt.block_on(next_chunk(&mut s)).unwrap();
        assert_eq!(lines(&chunk), ["ADDED a1", "ADDED a2", "ADDED a3"]);
    }

    #[test]
    fn a_chunk_stops_growing_past_its_limit_and_the_rest_follows_in_order() {
        let mut s = streaming_with(100, 2_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let chunk = rt.block_on(next_chunk(&mut s)).unwrap();
            assert!(
                chunk.len() < COALESCE_MAX + 3_000,
                "a chunk of {} bytes",
                chunk.len()
            );
            let got = lines(&chunk);
            assert!(
                got.len() > 1 && got.len() < 100,
                "{} events in a chunk",
                got.len()
            );
            seen.extend(got);
        }
        let want: Vec<String> = (1..=100).map(|i| format!("ADDED a{i}")).collect();
        assert_eq!(seen, want);
    }
}
