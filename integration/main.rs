//! Integration tests: the server against real PostgreSQL clusters and real clients.

mod api_errors;
mod discovery;
mod harness;
mod resource_version;
mod semantics;
mod startup;
