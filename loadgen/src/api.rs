//! The Kubernetes REST calls the scenarios make, as any client would: JSON over TLS.
//! Every call checks the status code, so smoke mode can insist that all of them succeeded.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

pub const GROUP_VERSION: &str = "ark.mckinsey.com/v1alpha1";

/// An HTTP client for the server's self-signed certificate. `http2` multiplexes every request
/// over one connection per client (how the many-watchers scenario keeps its socket count
/// small); otherwise HTTP/1.1 with a connection per concurrent request, as the published
/// harness used.
pub fn http_client(http2: bool) -> Result<reqwest::Client, String> {
    builder(http2)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

fn builder(http2: bool) -> reqwest::ClientBuilder {
    let b = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    if http2 {
        b.http2_prior_knowledge()
            .http2_initial_stream_window_size(Some(1 << 20))
            .http2_initial_connection_window_size(Some(16 << 20))
    } else {
        b.http1_only()
    }
}

/// An error with its causes: reqwest's own Display says only "error sending request", and
/// whether the connection was reset, closed while idle or timed out is in its sources.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str, http2: bool) -> Result<Api, String> {
        Ok(Api {
            http: http_client(http2)?,
            base: base.to_string(),
        })
    }

    /// A client that presents a client certificate (`cert_pem` then `key_pem`, PEM), over
    /// HTTP/1.1 like [`Api::new`].
    pub fn with_identity(base: &str, cert_and_key_pem: &str) -> Result<Api, String> {
        let identity = reqwest::Identity::from_pem(cert_and_key_pem.as_bytes())
            .map_err(|e| format!("reading the client certificate: {e}"))?;
        let http = builder(false)
            .identity(identity)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Api {
            http,
            base: base.to_string(),
        })
    }

    pub fn collection(&self, plural: &str, ns: &str) -> String {
        format!(
            "{}/apis/{GROUP_VERSION}/namespaces/{ns}/{plural}",
            self.base
        )
    }

    pub fn item(&self, plural: &str, ns: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(plural, ns))
    }

    pub async fn create(&self, plural: &str, ns: &str, body: Bytes) -> Result<(), String> {
        let r = self
            .http
            .post(self.collection(plural, ns))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("create: {}", chain(&e)))?;
        expect(r, 201, "create").await.map(drop)
    }

    pub async fn get(&self, plural: &str, ns: &str, name: &str) -> Result<Bytes, String> {
        self.get_with(plural, ns, name, "").await
    }

    /// A GET with a query string (`resourceVersion=0`, say).
    pub async fn get_with(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        query: &str,
    ) -> Result<Bytes, String> {
        let mut url = self.item(plural, ns, name);
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("get: {}", chain(&e)))?;
        expect(r, 200, "get").await
    }

    /// A LIST; the body is read to its last byte (the latency a client sees before it can
    /// decode), and returned for the caller to check outside the timed part.
    pub async fn list(&self, plural: &str, ns: Option<&str>, query: &str) -> Result<Bytes, String> {
        let url = match ns {
            Some(ns) => self.collection(plural, ns),
            None => format!("{}/apis/{GROUP_VERSION}/{plural}", self.base),
        };
        let r = self
            .http
            .get(format!("{url}?{query}"))
            .send()
            .await
            .map_err(|e| format!("list: {}", chain(&e)))?;
        expect(r, 200, "list").await
    }

    /// A merge patch of the spec: one field changes, as a controller's update would.
    pub async fn patch(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        patch: Value,
    ) -> Result<(), String> {
        let r = self
            .http
            .patch(self.item(plural, ns, name))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .map_err(|e| format!("patch: {}", chain(&e)))?;
        expect(r, 200, "patch").await.map(drop)
    }

    /// A server-side apply of a whole configuration, forced, as Flux and Argo CD send it.
    pub async fn apply(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        config: String,
        manager: &str,
    ) -> Result<(), String> {
        let r = self
            .http
            .patch(format!(
                "{}?fieldManager={manager}&force=true",
                self.item(plural, ns, name)
            ))
            .header("content-type", "application/apply-patch+yaml")
            .body(config)
            .send()
            .await
            .map_err(|e| format!("apply: {}", chain(&e)))?;
        expect(r, 200, "apply").await.map(drop)
    }

    pub async fn delete(&self, plural: &str, ns: &str, name: &str) -> Result<(), String> {
        let r = self
            .http
            .delete(self.item(plural, ns, name))
            .send()
            .await
            .map_err(|e| format!("delete: {}", chain(&e)))?;
        expect(r, 200, "delete").await.map(drop)
    }
}

async fn expect(r: reqwest::Response, code: u16, what: &str) -> Result<Bytes, String> {
    let status = r.status().as_u16();
    let body = r
        .bytes()
        .await
        .map_err(|e| format!("{what}: reading the body: {e}"))?;
    if status != code {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("{what}: HTTP {status}: {text}"));
    }
    Ok(body)
}

/// The published object shape: a Query of about 250 bytes aimed at one Agent.
pub fn query(name: &str, ns: &str, agent: &str) -> Bytes {
    Bytes::from(
        json!({
            "apiVersion": GROUP_VERSION, "kind": "Query",
            "metadata": {"name": name, "namespace": ns, "labels": {"bench": "load"}},
            "spec": {"input": "What is the weather today in New York?", "target": {"type": "agent", "name": agent}}
        })
        .to_string(),
    )
}

/// An Agent whose prompt makes the object about `size` bytes of JSON (4 KB and 64 KB are
/// the shapes long prompts and tool lists give in the field). The prompt is varied text so
/// that PostgreSQL's compression does not make a 64 KB object small on disk.
pub fn agent(name: &str, ns: &str, size: usize) -> Bytes {
    let mut prompt = String::with_capacity(size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (name.len() as u64);
    for b in name.bytes() {
        x = x.wrapping_mul(31).wrapping_add(b as u64);
    }
    while prompt.len() < size.saturating_sub(300) {
        // xorshift: cheap, deterministic, and incompressible enough.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = WORDS[(x % WORDS.len() as u64) as usize];
        prompt.push_str(word);
        prompt.push(' ');
    }
    Bytes::from(
        json!({
            "apiVersion": GROUP_VERSION, "kind": "Agent",
            "metadata": {"name": name, "namespace": ns, "labels": {"bench": "load"}},
            "spec": {"description": "load generator agent", "prompt": prompt}
        })
        .to_string(),
    )
}

const WORDS: &[&str] = &[
    "answer",
    "weather",
    "forecast",
    "customer",
    "invoice",
    "summarize",
    "report",
    "policy",
    "tool",
    "search",
    "context",
    "retrieve",
    "document",
    "quarterly",
    "revenue",
    "analysis",
    "market",
    "risk",
    "compliance",
    "escalate",
    "ticket",
    "priority",
    "latency",
    "cluster",
    "deploy",
    "rollback",
    "metric",
    "alert",
    "budget",
    "forecasting",
    "segment",
    "pricing",
];

/// The name in a watch event line, found by a byte search rather than a JSON parse: with
/// 10,000 watchers the generator would otherwise spend more CPU decoding than the server
/// spends sending, on the same two cores.
pub fn event_name<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let key = b"\"name\":\"";
    let mut from = 0;
    while let Some(pos) = find(&line[from..], key) {
        let start = from + pos + key.len();
        if line[start..].starts_with(prefix) {
            let end = line[start..].iter().position(|&b| b == b'"')? + start;
            return Some(&line[start..end]);
        }
        from = start;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_shape_is_about_250_bytes() {
        let q = query("q-000001", "bench", "bench-agent");
        assert!((200..=300).contains(&q.len()), "{}", q.len());
    }

    #[test]
    fn agents_have_the_requested_size() {
        for size in [4096, 65536] {
            let a = agent("a-1", "bench", size);
            assert!(
                a.len() >= size - 400 && a.len() <= size + 100,
                "{} for {size}",
                a.len()
            );
        }
    }

    #[test]
    fn event_names_are_found_without_parsing() {
        let line = br#"{"type":"ADDED","object":{"metadata":{"name":"w-17","namespace":"x"},"spec":{"target":{"name":"bench-agent"}}}}"#;
        assert_eq!(event_name(line, b"w-"), Some(&b"w-17"[..]));
        assert_eq!(event_name(line, b"zz"), None);
    }
}
