//! Server-side apply and field ownership, as kube-apiserver does them for custom resources.
//!
//! A pure core, no I/O: the counterpart of sigs.k8s.io/structured-merge-diff (`path`,
//! `set`, `schema`, `typed`, `updater`) and of k8s.io/apimachinery's managedfields
//! pipeline (`managed`). The registry calls [`managed::record_update`] for every create,
//! update and patch, and [`managed::apply`] for `application/apply-patch+yaml`; it owns
//! everything else about the write (preconditions, defaults, validation, storage).

pub mod managed;
pub mod path;
pub mod reconcile;
pub mod schema;
pub mod set;
pub mod typed;
pub mod updater;

#[cfg(test)]
mod smd_fixtures;
#[cfg(test)]
mod tests;

pub use managed::{Applied, Endpoint};
pub use schema::Schema;
pub use set::Set;
pub use updater::Conflict;

/// Why an apply did not produce an object, by what the caller answers.
#[derive(Debug)]
pub enum ApplyError {
    /// Fields other managers own would change: 409 with one cause per field.
    Conflict(Vec<Conflict>),
    /// The configuration is not an object of this type: 400.
    BadRequest(String),
    /// An associative list in the configuration repeats a key: 422.
    Duplicate(String),
    /// Stored managedFields that cannot be read: 500.
    Internal(String),
}

/// The fields an endpoint resets, so that no write through it owns them: `status` on the
/// main resource of a kind with a status subresource, and everything but `status` on
/// `/status` (kube's `GetResetFields` for custom resources).
pub fn reset_fields(status_subresource: bool, has_status: bool) -> Option<Set> {
    let f = path::PathElement::field;
    if status_subresource {
        let mut s = Set::new();
        for top in ["apiVersion", "kind", "metadata", "spec"] {
            s.insert(&[f(top)]);
        }
        Some(s)
    } else if has_status {
        let mut s = Set::new();
        s.insert(&[f("status")]);
        Some(s)
    } else {
        None
    }
}
