//! Audit logging with kube-apiserver's semantics: an `audit.k8s.io/v1` Policy decides a
//! level per request, each request yields `audit.k8s.io/v1` Events at its stages, and the
//! events are written one JSON object per line to a file (rotated as kube's lumberjack
//! backend rotates it) or to standard output.
//!
//! - [`policy`] (pure): parse, validate and evaluate a Policy.
//! - [`event`] (pure): the Event as kube writes it, byte for byte.
//! - [`record`] (pure, through a [`record::Sink`]): what the HTTP layer drives, the
//!   [`Auditor`] and the per-request [`AuditRecord`].
//! - [`config`]: the `--audit-*` settings and their validation, named by flag.
//! - [`backend`] and [`rotate`] (thin I/O): a bounded queue to a writer thread, and the
//!   rotating file.
//!
//! The HTTP layer never sees the policy or the event: it begins a record with the request's
//! attributes and user, tells it what happened, and finishes it.

pub mod backend;
pub mod config;
pub mod event;
pub mod policy;
pub mod record;
pub mod rotate;

pub use backend::AuditBackend;
pub use config::{AuditConfig, AuditConfigError, ValidatedAudit};
pub use policy::{Policy, PolicyError};
pub use record::{
    audit_id, source_ips, AuditRecord, Auditor, AuthMethod, AuthorizationDecision, RequestMeta,
    Sink, AUDIT_ID_HEADER,
};

use serde::Serialize;

/// How much of a request is recorded, as `audit.k8s.io/v1` `Level`. Ordered: each level
/// records everything the ones before it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    /// No events.
    None,
    /// Who, what, when and the outcome; no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, the request body and the response body.
    RequestResponse,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::None,
        Level::Metadata,
        Level::Request,
        Level::RequestResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in its handling a request was when an event was written (`audit.k8s.io/v1`
/// `Stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Stage {
    /// As soon as the request is authenticated, before it is authorized or handled.
    RequestReceived,
    /// The response headers are sent; only for long-running requests (watches).
    ResponseStarted,
    /// The response is finished.
    ResponseComplete,
    /// The handler panicked.
    Panic,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::RequestReceived,
        Stage::ResponseStarted,
        Stage::ResponseComplete,
        Stage::Panic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Stage::RequestReceived => 1,
            Stage::ResponseStarted => 2,
            Stage::ResponseComplete => 4,
            Stage::Panic => 8,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of stages: the stages a rule omits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageSet(u8);

impl StageSet {
    pub fn contains(self, stage: Stage) -> bool {
        self.0 & stage.bit() != 0
    }

    pub fn insert(&mut self, stage: Stage) {
        self.0 |= stage.bit();
    }

    pub fn union(self, other: StageSet) -> StageSet {
        StageSet(self.0 | other.0)
    }
}

impl FromIterator<Stage> for StageSet {
    fn from_iter<I: IntoIterator<Item = Stage>>(iter: I) -> Self {
        let mut s = StageSet::default();
        for stage in iter {
            s.insert(stage);
        }
        s
    }
}

/// Starts auditing from a validated configuration: the backend's writer and an auditor
/// writing to it. Logs the policy's warnings. Keep the backend to close it at shutdown.
pub fn start(
    audit: ValidatedAudit,
) -> Result<(Auditor, std::sync::Arc<AuditBackend>), AuditConfigError> {
    for w in &audit.warnings {
        tracing::warn!("{w}");
    }
    let backend = std::sync::Arc::new(AuditBackend::start(&audit.output, audit.buffer_size)?);
    let auditor = Auditor::new(audit.policy, backend.clone());
    Ok((auditor, backend))
}
