//! Prometheus metrics: the recorder and the names the server records.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from sub-millisecond reads to slow writes.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();

/// The process's Prometheus recorder, installed on first use. Tests start several servers in
/// one process; they share it. `None` if another recorder was installed first.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("apiserver_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full("ark_store_write_batch_size".into()),
            BATCH_BUCKETS,
        )
        .ok()?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    Some(handle)
}

/// One API request: counted by verb, resource and HTTP code; timed by verb and resource.
pub fn record_request(verb: &'static str, resource: &str, code: u16, took: Duration) {
    let resource = resource.to_string();
    metrics::counter!("apiserver_request_total", "verb" => verb, "resource" => resource.clone(), "code" => code.to_string()).increment(1);
    metrics::histogram!("apiserver_request_duration_seconds", "verb" => verb, "resource" => resource).record(took.as_secs_f64());
}

/// One check of the serving certificate files that found new content: a new pair served
/// (`applied`), or refused and the current one kept (`rejected`).
pub fn record_serving_cert_reload(applied: bool) {
    let result = if applied { "applied" } else { "rejected" };
    metrics::counter!("ark_tls_serving_cert_reloads_total", "result" => result).increment(1);
}

/// Pool use, sampled when /metrics is scraped.
pub fn record_pool(pool: &deadpool_postgres::Pool) {
    let s = pool.status();
    metrics::gauge!("ark_db_pool_max_size").set(s.max_size as f64);
    metrics::gauge!("ark_db_pool_size").set(s.size as f64);
    metrics::gauge!("ark_db_pool_available").set(s.available as f64);
    metrics::gauge!("ark_db_pool_in_use").set(s.size.saturating_sub(s.available) as f64);
    metrics::gauge!("ark_db_pool_waiting").set(s.waiting as f64);
}

/// The watch side, sampled when /metrics is scraped.
pub fn record_watch(state: &crate::watch::State) {
    for (kind, n) in state.open_watchers_by_kind() {
        metrics::gauge!("ark_watch_open_watchers", "kind" => kind).set(n as f64);
    }
    for (kind, n) in state.history_sizes() {
        metrics::gauge!("ark_watch_history_events", "kind" => kind).set(n as f64);
    }
    for (kind, n) in state.object_counts() {
        metrics::gauge!("ark_watch_objects", "kind" => kind).set(n as f64);
    }
    for (kind, n) in state.cold_counts() {
        metrics::gauge!("ark_watch_cold_objects", "kind" => kind).set(n as f64);
    }
    metrics::gauge!("ark_watch_resource_version").set(state.rv() as f64);
    metrics::gauge!("ark_watch_retained_snapshots").set(state.retained_snapshots() as f64);
}

/// The slot as PostgreSQL sees it, sampled when /metrics is scraped.
pub fn record_slot(info: Option<&crate::cdc::slot::SlotInfo>) {
    let Some(i) = info else {
        metrics::gauge!("ark_cdc_slot_exists").set(0.0);
        return;
    };
    metrics::gauge!("ark_cdc_slot_exists").set(1.0);
    metrics::gauge!("ark_cdc_slot_active").set(if i.active { 1.0 } else { 0.0 });
    if let Some(b) = i.lag_bytes {
        metrics::gauge!("ark_cdc_slot_lag_bytes").set(b as f64);
    }
    if let Some(b) = i.retained_bytes {
        metrics::gauge!("ark_cdc_slot_retained_wal_bytes").set(b as f64);
    }
    for status in ["reserved", "extended", "unreserved", "lost"] {
        let v = if i.wal_status.as_deref() == Some(status) {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("ark_cdc_slot_wal_status", "status" => status).set(v);
    }
}

/// One request's audit level, as kube's `apiserver_audit_level_total{level}`.
pub fn record_audit_level(level: &'static str) {
    metrics::counter!("apiserver_audit_level_total", "level" => level).increment(1);
}

/// One audit event handed to the backend, as kube's `apiserver_audit_event_total`.
pub fn record_audit_event() {
    metrics::counter!("apiserver_audit_event_total").increment(1);
}

/// An audit event lost: `plugin` is `buffered` when the queue was full (kube's batch
/// buffer) and `log` when writing it failed, as kube's `apiserver_audit_error_total{plugin}`.
pub fn record_audit_error(plugin: &'static str) {
    metrics::counter!("apiserver_audit_error_total", "plugin" => plugin).increment(1);
}
