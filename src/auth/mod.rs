//! Who is asking and what they ask to do: request attributes, users, authentication and
//! authorization, as k8s.io/apiserver does them for an aggregated API server.
//!
//! The decisions here are pure (attributes from a request line, users from verified
//! certificates and headers, review bodies and Forbidden messages); what reaches the
//! kube-apiserver goes through one client. Nothing in `registry/`, `store/` or `watch/`
//! learns about users.

pub mod attributes;
pub mod authn;
pub mod authz;
pub mod forbidden;
pub mod requestheader;
pub mod sources;
pub mod user;
pub mod x509;
