//! The request-response scenarios: create, get, LIST (whole and paged), update and delete,
//! each a closed loop at a given concurrency against the Query and Agent shapes.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;
use serde_json::json;

use crate::api::Api;
use crate::stats::{closed_loop, Samples};

/// Creates `bodies[i]` for every i at `concurrency`.
pub async fn create(
    api: &Api,
    plural: &'static str,
    ns: &str,
    bodies: Arc<Vec<Bytes>>,
    concurrency: usize,
) -> Samples {
    let (api, ns) = (api.clone(), ns.to_string());
    let n = bodies.len();
    closed_loop(concurrency, n, move |i| {
        let (api, ns, body) = (api.clone(), ns.clone(), bodies[i].clone());
        async move { api.create(plural, &ns, body).await }
    })
    .await
}

/// `n` GETs of random names among `names`.
pub async fn get(
    api: &Api,
    plural: &'static str,
    ns: &str,
    names: Arc<Vec<String>>,
    n: usize,
    concurrency: usize,
) -> Samples {
    let (api, ns) = (api.clone(), ns.to_string());
    closed_loop(concurrency, n, move |_| {
        let (api, ns) = (api.clone(), ns.clone());
        let name = names[rand::rng().random_range(0..names.len())].clone();
        async move { api.get(plural, &ns, &name).await.map(drop) }
    })
    .await
}

/// One GET of every name in `names`, at `concurrency`.
pub async fn get_each(
    api: &Api,
    plural: &'static str,
    ns: &str,
    names: Arc<Vec<String>>,
    concurrency: usize,
) -> Samples {
    each_name(
        api,
        ns,
        names,
        concurrency,
        move |api, ns, name| async move { api.get(plural, &ns, &name).await.map(drop) },
    )
    .await
}

/// Unpaginated LISTs of a namespace; each must return `expect` items (checked after the
/// timed part by counting, so the check costs nothing in the figure).
pub async fn list(
    api: &Api,
    plural: &'static str,
    ns: &str,
    iterations: usize,
    concurrency: usize,
    expect: usize,
) -> Samples {
    let (api, ns) = (api.clone(), ns.to_string());
    closed_loop(concurrency, iterations, move |_| {
        let (api, ns) = (api.clone(), ns.clone());
        async move {
            let body = api.list(plural, Some(&ns), "").await?;
            let got = count_items(&body)?;
            if got != expect {
                return Err(format!("LIST returned {got} items, expected {expect}"));
            }
            Ok(())
        }
    })
    .await
}

/// Walks the namespace page by page (`limit`, then `continue`), `walks` times; each page is
/// one sample. Every walk must see exactly `expect` items.
pub async fn pages(
    api: &Api,
    plural: &str,
    ns: &str,
    limit: usize,
    walks: usize,
    expect: usize,
) -> Samples {
    let mut s = Samples::default();
    let start = std::time::Instant::now();
    for _ in 0..walks {
        let mut token: Option<String> = None;
        let mut seen = 0;
        loop {
            let q = match &token {
                None => format!("limit={limit}"),
                Some(t) => format!("limit={limit}&continue={t}"),
            };
            let t = std::time::Instant::now();
            let body = match api.list(plural, Some(ns), &q).await {
                Ok(b) => b,
                Err(e) => {
                    s.record_error(e);
                    break;
                }
            };
            s.latencies.push(t.elapsed());
            let v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    s.record_error(format!("page: {e}"));
                    break;
                }
            };
            seen += v["items"].as_array().map_or(0, |a| a.len());
            match v["metadata"]["continue"].as_str() {
                Some(t) if !t.is_empty() => token = Some(urlencode(t)),
                _ => break,
            }
        }
        if seen != expect {
            s.record_error(format!("a paged walk saw {seen} items, expected {expect}"));
        }
    }
    s.elapsed = start.elapsed();
    s
}

/// Merge-patches one spec field of `names[i]`, for every name, at `concurrency`.
pub async fn update(
    api: &Api,
    plural: &'static str,
    ns: &str,
    names: Arc<Vec<String>>,
    concurrency: usize,
    round: usize,
) -> Samples {
    each_name(api, ns, names, concurrency, move |api, ns, name| async move {
        let patch = json!({"spec": {"input": format!("What is the weather today in New York? (revision {round})")}});
        api.patch(plural, &ns, &name, patch).await
    })
    .await
}

/// A forced server-side apply of each Query's whole configuration with the input of
/// `round`: a changed field when `round` is new, nothing to write when it was applied last.
pub async fn apply(
    api: &Api,
    plural: &'static str,
    ns: &str,
    names: Arc<Vec<String>>,
    concurrency: usize,
    round: usize,
) -> Samples {
    each_name(api, ns, names, concurrency, move |api, ns, name| async move {
        let config = json!({
            "apiVersion": crate::api::GROUP_VERSION, "kind": "Query",
            "metadata": {"name": name, "namespace": ns, "labels": {"bench": "load"}},
            "spec": {
                "input": format!("What is the weather today in New York? (applied revision {round})"),
                "target": {"type": "agent", "name": "bench-agent"}
            }
        });
        api.apply(plural, &ns, &name, config.to_string(), "bench-applier")
            .await
    })
    .await
}

pub async fn delete(
    api: &Api,
    plural: &'static str,
    ns: &str,
    names: Arc<Vec<String>>,
    concurrency: usize,
) -> Samples {
    each_name(
        api,
        ns,
        names,
        concurrency,
        move |api, ns, name| async move { api.delete(plural, &ns, &name).await },
    )
    .await
}

/// Runs `op` once for every name, at `concurrency`.
async fn each_name<F, Fut>(
    api: &Api,
    ns: &str,
    names: Arc<Vec<String>>,
    concurrency: usize,
    op: F,
) -> Samples
where
    F: Fn(Api, String, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (api, ns) = (api.clone(), ns.to_string());
    let n = names.len();
    closed_loop(concurrency, n, move |i| {
        op(api.clone(), ns.clone(), names[i].clone())
    })
    .await
}

/// The number of items in a LIST body, without building the objects.
pub fn count_items(body: &[u8]) -> Result<usize, String> {
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<List>(body)
        .map(|l| l.items.len())
        .map_err(|e| format!("decoding a LIST: {e}"))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
