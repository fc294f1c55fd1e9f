//! Storage errors, classified by what the caller does next, and SQLSTATE classification.

use tokio_postgres::error::SqlState;

/// What went wrong in storage, in terms a caller can act on. Messages never carry SQL text
/// to clients: `Unavailable` and `Internal` keep the driver's words for logs only.
#[derive(Debug, thiserror::Error)]
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
    /// PostgreSQL cannot be reached or is shutting down; retrying later may work (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The connection broke while a COMMIT was in flight: the write may or may not have happened.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// PostgreSQL refused the data itself (e.g. a value it cannot store); retrying will not help.
    #[error("rejected by the database: {0}")]
    Rejected(String),
    /// A bug or an unexpected database state.
    #[error("internal storage error: {0}")]
    Internal(String),
}

/// How a driver error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Connection-level or server-availability failure: retry later.
    Transient,
    /// Serialization failure or deadlock: the transaction may simply be retried now.
    Retry,
    /// The statement's data was refused (invalid text, value too large, ...).
    Data,
    /// Everything else.
    Other,
}

pub fn classify(e: &tokio_postgres::Error) -> Class {
    if e.is_closed() {
        return Class::Transient;
    }
    let Some(code) = e.code() else {
        // No SQLSTATE means the error came from the client side: I/O, TLS, protocol.
        return Class::Transient;
    };
    classify_state(code)
}

pub fn classify_state(code: &SqlState) -> Class {
    let c = code.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Class::Retry;
    }
    match &c[..2] {
        // connection exception, insufficient resources, operator intervention (shutdown,
        // admin terminate, cannot connect now), system error
        "08" | "53" | "57" | "58" => Class::Transient,
        // data exception, program limit exceeded (e.g. jsonb too large)
        "22" | "54" => Class::Data,
        _ => Class::Other,
    }
}

impl StoreError {
    pub fn from_pg(e: tokio_postgres::Error) -> Self {
        let text = db_message(&e);
        match classify(&e) {
            Class::Transient => StoreError::Unavailable(text),
            Class::Data => StoreError::Rejected(text),
            Class::Retry | Class::Other => StoreError::Internal(text),
        }
    }

    pub fn from_pool(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::from_pg(e),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// The driver's error with the server's message, for logs. A client-side error carries its
/// causes ("error connecting to server: Connection refused (os error 111)"): the driver's own
/// text alone does not say whether the host, the port or the network is at fault.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => with_causes(e),
    }
}

/// An error's text followed by each cause's, skipping causes its text already includes.
pub fn with_causes(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_connection_failures_are_transient() {
        assert_eq!(classify_state(&SqlState::ADMIN_SHUTDOWN), Class::Transient);
        assert_eq!(
            classify_state(&SqlState::CONNECTION_FAILURE),
            Class::Transient
        );
        assert_eq!(
            classify_state(&SqlState::TOO_MANY_CONNECTIONS),
            Class::Transient
        );
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
    fn bad_data_is_not_retried() {
        assert_eq!(
            classify_state(&SqlState::UNTRANSLATABLE_CHARACTER),
            Class::Data
        );
        assert_eq!(
            classify_state(&SqlState::PROGRAM_LIMIT_EXCEEDED),
            Class::Data
        );
        assert_eq!(
            classify_state(&SqlState::T_R_SERIALIZATION_FAILURE),
            Class::Retry
        );
        assert_eq!(classify_state(&SqlState::UNDEFINED_TABLE), Class::Other);
    }
}
