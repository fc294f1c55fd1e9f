//! The audit trail of one request, as the HTTP layer drives it: the guard begins it, the
//! handlers hand it the request and response objects (only copied when the level records
//! them), and it ends when the response is complete, or, for a watch, when the stream ends.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::{HttpMessage, HttpRequest};
use bytes::Bytes;
use serde_json::Value;

use crate::audit::{AuditRecord, Level};

/// What a request's record holds until it is finished; shared through the request's
/// extensions.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Slot>>);

#[derive(Default)]
struct Slot {
    record: Option<AuditRecord>,
    response: Option<Value>,
    status: Option<Value>,
}

impl AuditSlot {
    pub fn new(record: AuditRecord) -> AuditSlot {
        AuditSlot(Arc::new(Mutex::new(Slot {
            record: Some(record),
            ..Default::default()
        })))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn level(&self) -> Level {
        self.with(|s| s.record.as_ref().map_or(Level::None, AuditRecord::level))
    }

    /// Ends the record now, with what the handlers left.
    pub fn complete(&self, code: u16) {
        self.with(|s| {
            if let Some(r) = s.record.take() {
                let status = s.status.take();
                let response = s.response.take().or_else(|| status.clone());
                r.complete(code, status.as_ref(), response.as_ref());
            }
        });
    }

    /// A watch: writes ResponseStarted now; the record ends with the stream.
    pub fn response_started(&self, code: u16) {
        self.with(|s| {
            if let Some(r) = s.record.as_mut() {
                r.response_started(code);
            }
        });
    }
}

fn slot(req: &HttpRequest) -> Option<AuditSlot> {
    req.extensions().get::<AuditSlot>().cloned()
}

/// The object a create or update sent (kept from level Request).
pub fn request_object(req: &HttpRequest, obj: &Value) {
    if let Some(s) = slot(req) {
        if s.level() >= Level::Request {
            s.with(|s| {
                if let Some(r) = s.record.as_mut() {
                    r.set_request_object(obj);
                }
            });
        }
    }
}

/// A patch's body (kept from level Request).
pub fn request_patch(req: &HttpRequest, body: &[u8]) {
    if let Some(s) = slot(req) {
        if s.level() >= Level::Request {
            let patch = serde_json::from_slice::<Value>(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            s.with(|s| {
                if let Some(r) = s.record.as_mut() {
                    r.set_request_patch(&patch);
                }
            });
        }
    }
}

/// The object answered (kept at level RequestResponse; made only then).
pub fn response_object(req: &HttpRequest, make: impl FnOnce() -> Value) {
    if let Some(s) = slot(req) {
        if s.level() >= Level::RequestResponse {
            let obj = make();
            s.with(|s| s.response = Some(obj));
        }
    }
}

/// The Status of an error answer (recorded at every level, as kube records it).
pub fn response_status(req: &HttpRequest, status: &Value) {
    if let Some(s) = slot(req) {
        let status = status.clone();
        s.with(|s| s.status = Some(status));
    }
}

/// A response body that completes its request's record when it has been sent (or dropped,
/// when the client went away first): what a watch's record waits for.
pub struct AuditedBody {
    inner: BoxBody,
    slot: Option<AuditSlot>,
    code: u16,
}

impl AuditedBody {
    pub fn new(inner: BoxBody, slot: AuditSlot, code: u16) -> AuditedBody {
        AuditedBody {
            inner,
            slot: Some(slot),
            code,
        }
    }

    fn finish(&mut self) {
        if let Some(s) = self.slot.take() {
            s.complete(self.code);
        }
    }
}

impl MessageBody for AuditedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.finish();
        }
        polled
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        self.finish();
    }
}
