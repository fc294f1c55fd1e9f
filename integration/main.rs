//! Integration tests: the server against real PostgreSQL clusters and real clients.

mod harness;
mod resource_version;
