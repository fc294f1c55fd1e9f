//! The change stream: the `ark_cdc` logical replication slot, decoded into committed
//! transactions and applied to the in-memory state. This is the only module that speaks
//! the replication protocol; `slot` manages the slot and publication over SQL.

pub mod assemble;
pub mod consume;
pub mod rows;
pub mod slot;
pub mod status;
pub mod stream;
pub mod timeline;
