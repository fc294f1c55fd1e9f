//! Integration tests: the server against real PostgreSQL clusters and real clients.

mod api_errors;
mod arkrc;
mod backup_restore;
mod consistent_reads;
mod dev_command;
mod discovery;
mod dockerfile;
mod harness;
mod helm_chart;
mod kube_client;
mod kubectl;
mod kubectl_list;
mod kubectl_more;
mod postgres_tls;
mod resource_version;
mod semantics;
mod slots;
mod startup;
mod startup_failures;
mod stream_faults;
mod stream_faults_slot;
mod watch;
mod watch_clients;
mod watch_consistency;
mod watch_formats;
mod watch_more;
