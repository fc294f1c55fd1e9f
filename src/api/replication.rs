//! The leader's side of the internal stream between replicas: its relay log, from a
//! follower's resourceVersion, one frame per line (`replica::frame`), for as long as this
//! replica leads.
//!
//! This path is outside the API: the security guard lets it through whatever
//! `--auth-mode` is, and it authenticates the follower itself by the leader's secret
//! (published in `ark_replicas`, so only readers of the database can present it). API
//! clients reach the server through the aggregator, which proxies only `/apis/...`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::stream;

use super::{error_response, AppState};
use crate::k8s::query::Query;
use crate::k8s::status::{ApiError, StatusReason};
use crate::replica::follow::{ORIGIN_HEADER, REPLICA_HEADER};
use crate::replica::log::{Cursor, StartError};
use crate::replica::{frame, ReaderGuard, Replica};

/// How long a follower that seeded ahead of this replica waits for it to catch up.
const TOO_NEW_WAIT: Duration = Duration::from_secs(5);
/// A heartbeat is relayed at least this often even when the log is idle, so a follower can
/// tell a quiet leader from a hung one.
const IDLE_PROGRESS: Duration = Duration::from_secs(1);
/// Entries per chunk written.
const BATCH: usize = 256;

pub async fn stream(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(replica) = state.replica.clone() else {
        return error_response(&ApiError::new(
            404,
            StatusReason::NotFound,
            "the server could not find the requested resource",
        ));
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !replica.accepts_token(presented) {
        return error_response(&ApiError::new(
            401,
            StatusReason::Unauthorized,
            "Unauthorized",
        ));
    }
    let follower = req
        .headers()
        .get(REPLICA_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let from = match Query::parse(req.query_string())
        .ok()
        .and_then(|q| q.get("resourceVersion").map(str::to_string))
        .map(|v| v.parse::<u64>())
    {
        Some(Ok(rv)) => rv,
        _ => {
            return error_response(&ApiError::new(
                400,
                StatusReason::BadRequest,
                "resourceVersion: a decimal resourceVersion is required",
            ))
        }
    };
    if !replica.is_leader() {
        return not_leader();
    }
    let cursor = match cursor_from(&replica, from).await {
        Ok(c) => c,
        Err(StartError::Gone { requested, oldest }) => {
            return error_response(&ApiError::new(
                410,
                StatusReason::Expired,
                format!("too old resource version: {requested} ({oldest})"),
            ))
        }
        Err(StartError::TooNew { requested, current }) => {
            return error_response(&ApiError::new(
                504,
                StatusReason::Timeout,
                format!("Too large resource version: {requested}, current: {current}"),
            ))
        }
    };
    tracing::info!(%follower, from, "a follower started reading the relay");
    let origin = replica.origin();
    let reader = Reader {
        guard: replica.reader_connected(&follower),
        tip: replica.log.subscribe(),
        roles: replica.role_changes(),
        shutdown: state.shutdown.clone(),
        replica,
        cursor,
        last_sent: Instant::now(),
    };
    let body = stream::unfold(reader, |mut r| async move {
        let chunk = r.next().await?;
        Some((Ok::<Bytes, actix_web::Error>(chunk), r))
    });
    let mut ok = HttpResponse::Ok();
    ok.content_type("application/x-ndjson")
        .insert_header(("cache-control", "no-store"));
    if let Some(origin) = origin {
        ok.insert_header((ORIGIN_HEADER, origin.to_header()));
    }
    ok.streaming(body)
}

fn not_leader() -> HttpResponse {
    error_response(&ApiError::new(
        503,
        StatusReason::ServiceUnavailable,
        "this replica does not hold the replication slot; follow the replica that does",
    ))
}

async fn cursor_from(replica: &Replica, from: u64) -> Result<Cursor, StartError> {
    let deadline = tokio::time::Instant::now() + TOO_NEW_WAIT;
    let mut tip = replica.log.subscribe();
    loop {
        match replica.log.cursor_from(from) {
            Err(StartError::TooNew { .. }) if tokio::time::Instant::now() < deadline => {
                let _ = tokio::time::timeout_at(deadline, tip.changed()).await;
            }
            other => return other,
        }
    }
}

struct Reader {
    replica: Arc<Replica>,
    cursor: Cursor,
    tip: tokio::sync::watch::Receiver<u64>,
    roles: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    last_sent: Instant,
    #[allow(dead_code)] // held for its Drop: the follower counts as connected meanwhile
    guard: ReaderGuard,
}

impl Reader {
    /// The next chunk, or `None` when the stream ends: this replica stopped leading or is
    /// shutting down, or the follower fell behind what the log holds (it reconnects,
    /// gets 410 and re-seeds).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if *self.shutdown.borrow() || !self.replica.is_leader() {
                return None;
            }
            let (entries, cursor) = self.replica.log.read(self.cursor, BATCH).ok()?;
            self.cursor = cursor;
            let now = now_micros();
            if !entries.is_empty() {
                let mut out = BytesMut::new();
                for e in &entries {
                    out.extend_from_slice(&frame::encode(e, now));
                }
                self.last_sent = Instant::now();
                return Some(out.freeze());
            }
            if self.last_sent.elapsed() >= IDLE_PROGRESS {
                // Idle (the heartbeat message may be late): say where we are.
                self.last_sent = Instant::now();
                let (rv, lsn) = self.replica.log.position();
                return Some(frame::encode(
                    &crate::replica::Entry::Progress { rv, lsn },
                    now,
                ));
            }
            let wait = IDLE_PROGRESS.saturating_sub(self.last_sent.elapsed());
            tokio::select! {
                _ = self.tip.changed() => {}
                _ = self.roles.changed() => {}
                _ = self.shutdown.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}
