//! Storage errors, classified by what the caller does next.
//!
//! Every decision about a database failure is made here, once, from the typed SQLSTATE the
//! server sent (or from the driver's own error kind when it sent none). Callers match on
//! [`StoreError`]'s variants; nothing anywhere looks at message text.

use std::sync::Arc;

use tokio_postgres::error::SqlState;

/// A failure reported by PostgreSQL or by the driver: the typed SQLSTATE when the server
/// sent one, and the error itself as the source, for logs. Cheap to clone, since one
/// failed batch answers every write in it.
#[derive(Debug, Clone)]
pub struct DbFailure {
    code: Option<SqlState>,
    /// For logs: the server's message and SQLSTATE, or the driver's error with its causes.
    text: String,
    source: Arc<dyn std::error::Error + Send + Sync>,
}

impl DbFailure {
    pub fn from_pg(e: tokio_postgres::Error) -> Self {
        DbFailure {
            code: e.code().cloned(),
            text: db_message(&e),
            source: Arc::new(e),
        }
    }

    /// A failure that is not a driver error (a pool timeout, a closed pool).
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        DbFailure {
            code: None,
            text: with_causes(&e),
            source: Arc::new(e),
        }
    }

    /// The SQLSTATE, when the server reported the failure.
    pub fn code(&self) -> Option<&SqlState> {
        self.code.as_ref()
    }
}

impl std::fmt::Display for DbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for DbFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Why PostgreSQL refused an object's data. Retrying the same data cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A string held a character jsonb cannot store (the NUL character, `\u0000`).
    UnstorableCharacter,
    /// A value exceeds a PostgreSQL limit (jsonb or row size).
    TooLarge,
    /// Any other data exception.
    InvalidData,
}

/// What went wrong in storage, in terms a caller can act on. Driver messages are kept as
/// sources for logs; they never reach a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A live object with this kind, namespace and name exists.
    #[error("already exists")]
    AlreadyExists,
    /// The object changed since the caller read it (resourceVersion precondition failed).
    #[error("conflict")]
    Conflict,
    /// No live object.
    #[error("not found")]
    NotFound,
    /// Retry later: PostgreSQL cannot be reached, is shutting down, or has no capacity.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbFailure),
    /// Retry now: the transaction lost a serialization or deadlock race.
    #[error("transaction aborted by a concurrent one: {0}")]
    RetryNow(#[source] DbFailure),
    /// The connection broke while a COMMIT was in flight: the write may or may not have
    /// happened.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(#[source] DbFailure),
    /// PostgreSQL refused the data itself; retrying the same data will not help.
    #[error("refused by the database ({reason:?}): {source}")]
    Refused {
        reason: Refusal,
        #[source]
        source: DbFailure,
    },
    /// A bug or an unexpected database state, from the database.
    #[error("unexpected database error: {0}")]
    Database(#[source] DbFailure),
    /// A bug or an unexpected state on this side (a malformed row, a stopped task).
    #[error("internal storage error: {0}")]
    Internal(String),
}

/// What a caller does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Wait and try again: the database is unavailable.
    RetryLater,
    /// Try again at once.
    RetryNow,
    /// Tell the client its data was refused.
    Refuse,
    /// Report a bug: nothing the caller can do.
    Report,
}

/// The step a SQLSTATE calls for.
pub fn next_step(code: &SqlState) -> NextStep {
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return NextStep::RetryNow;
    }
    match code.code().get(..2) {
        // connection exception, insufficient resources, operator intervention (shutdown,
        // admin terminate, cannot connect now), system error
        Some("08" | "53" | "57" | "58") => NextStep::RetryLater,
        // data exception, program limit exceeded (e.g. jsonb too large)
        Some("22" | "54") => NextStep::Refuse,
        _ => NextStep::Report,
    }
}

fn refusal(code: &SqlState) -> Refusal {
    if *code == SqlState::UNTRANSLATABLE_CHARACTER {
        Refusal::UnstorableCharacter
    } else if code.code().starts_with("54") {
        Refusal::TooLarge
    } else {
        Refusal::InvalidData
    }
}

impl StoreError {
    pub fn from_pg(e: tokio_postgres::Error) -> Self {
        // A closed connection, or an error without SQLSTATE (I/O, TLS, protocol), is the
        // driver's: the database may simply be unreachable.
        let step = match e.code() {
            _ if e.is_closed() => NextStep::RetryLater,
            None => NextStep::RetryLater,
            Some(code) => next_step(code),
        };
        let code = e.code().cloned();
        let failure = DbFailure::from_pg(e);
        match (step, code) {
            (NextStep::RetryLater, _) => StoreError::Unavailable(failure),
            (NextStep::RetryNow, _) => StoreError::RetryNow(failure),
            (NextStep::Refuse, Some(code)) => StoreError::Refused {
                reason: refusal(&code),
                source: failure,
            },
            (NextStep::Refuse | NextStep::Report, _) => StoreError::Database(failure),
        }
    }

    pub fn from_pool(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::from_pg(e),
            // Timeouts and a closed pool: the database did not give a connection in time.
            other => StoreError::Unavailable(DbFailure::other(other)),
        }
    }

    /// A commit whose connection broke: the write may have happened.
    pub fn from_commit(e: tokio_postgres::Error) -> Self {
        match Self::from_pg(e) {
            StoreError::Unavailable(f) => StoreError::OutcomeUnknown(f),
            other => other,
        }
    }

    /// What a caller does about this error.
    pub fn next_step(&self) -> NextStep {
        match self {
            StoreError::Unavailable(_) => NextStep::RetryLater,
            StoreError::RetryNow(_) => NextStep::RetryNow,
            StoreError::AlreadyExists
            | StoreError::Conflict
            | StoreError::NotFound
            | StoreError::Refused { .. } => NextStep::Refuse,
            StoreError::OutcomeUnknown(_) | StoreError::Database(_) | StoreError::Internal(_) => {
                NextStep::Report
            }
        }
    }

    /// The SQLSTATE behind the error, if the database reported one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            StoreError::Unavailable(f)
            | StoreError::RetryNow(f)
            | StoreError::OutcomeUnknown(f)
            | StoreError::Refused { source: f, .. }
            | StoreError::Database(f) => f.code(),
            _ => None,
        }
    }
}

/// An error's text followed by each cause's, skipping causes its text already includes.
/// The driver's own text alone ("error connecting to server") does not say whether the
/// host, the port or the network is at fault; its causes do.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// The driver's error with the server's message and SQLSTATE, for logs.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => with_causes(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_connection_failures_are_retried_later() {
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CONNECTION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CANNOT_CONNECT_NOW,
        ] {
            assert_eq!(next_step(&code), NextStep::RetryLater, "{code:?}");
        }
    }

    #[test]
    fn lost_races_are_retried_now() {
        assert_eq!(
            next_step(&SqlState::T_R_SERIALIZATION_FAILURE),
            NextStep::RetryNow
        );
        assert_eq!(
            next_step(&SqlState::T_R_DEADLOCK_DETECTED),
            NextStep::RetryNow
        );
    }

    #[test]
    fn bad_data_is_refused_with_its_reason() {
        assert_eq!(
            next_step(&SqlState::UNTRANSLATABLE_CHARACTER),
            NextStep::Refuse
        );
        assert_eq!(
            refusal(&SqlState::UNTRANSLATABLE_CHARACTER),
            Refusal::UnstorableCharacter
        );
        assert_eq!(
            refusal(&SqlState::PROGRAM_LIMIT_EXCEEDED),
            Refusal::TooLarge
        );
        assert_eq!(
            refusal(&SqlState::INVALID_TEXT_REPRESENTATION),
            Refusal::InvalidData
        );
        assert_eq!(next_step(&SqlState::UNDEFINED_TABLE), NextStep::Report);
    }

    #[test]
    fn client_side_errors_keep_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error connecting to server")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            with_causes(&Outer(io)),
            "error connecting to server: Connection refused"
        );
    }

    #[test]
    fn a_failure_shows_its_causes_and_sqlstate_for_logs() {
        let e = StoreError::Unavailable(DbFailure::other(std::io::Error::other("pool timed out")));
        assert_eq!(e.to_string(), "database unavailable: pool timed out");
        assert_eq!(e.next_step(), NextStep::RetryLater);
        assert!(std::error::Error::source(&e).is_some());
    }
}
