//! ark-apiserver: the `ark.mckinsey.com` API group served from PostgreSQL as a Kubernetes
//! aggregated API server. See ARCHITECTURE.md for the map of the modules.

pub mod api;
pub mod app;
pub mod apply;
pub mod arkrc;
pub mod audit;
pub mod auth;
pub mod cdc;
pub mod config;
pub mod embedded;
pub mod k8s;
pub mod kubeapi;
pub mod metrics;
pub mod pgoutput;
pub mod registry;
pub mod replica;
pub mod security;
pub mod store;
pub mod tls;
pub mod watch;
