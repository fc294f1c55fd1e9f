//! Tests for the pgoutput decoder: hand-built messages, framing and helpers, property tests,
//! and messages captured from a real PostgreSQL 15.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::unreachable
)]

pub(crate) mod encode;
mod fixtures;
mod framing;
mod messages;
mod props;
mod streaming;
