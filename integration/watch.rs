//! The watch as kube-apiserver serves it for custom resources: `kubectl get -w`, the
//! resourceVersion start points, both URL forms, selectors, bookmarks, WatchList, event
//! contents, Table and metadata-only watches, direct SQL changes and TOASTed values.
//! Helpers shared with watch_more.rs live here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::harness::{kubectl_path, TestServer};

pub const GV: &str = "/apis/ark.mckinsey.com/v1alpha1";
/// How long a test waits for an event it expects.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn agents(ns: &str) -> String {
    format!("{GV}/namespaces/{ns}/agents")
}

/// An Agent whose printer columns are all set (MODEL from spec.modelRef).
pub fn agent(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "labels": labels},
        "spec": {"prompt": format!("You are {name}."), "modelRef": {"name": "m1"}}})
}

/// `metadata.resourceVersion` as a number.
pub fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.resourceVersion in {v}"))
        .parse()
        .unwrap_or_else(|_| panic!("resourceVersion is not a decimal integer in {v}"))
}

/// "TYPE ns/name rv" for messages.
pub fn brief(ev: &Value) -> String {
    let o = &ev["object"];
    format!(
        "{} {}/{} {}",
        ev["type"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or(""),
        o["metadata"]["resourceVersion"].as_str().unwrap_or("")
    )
}

pub fn briefs(evs: &[Value]) -> Vec<String> {
    evs.iter().map(brief).collect()
}

/// (type, name) of an event.
pub fn tn(ev: &Value) -> (String, String) {
    (
        ev["type"].as_str().unwrap_or("?").to_string(),
        ev["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

pub fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect()
}

/// The API over HTTP, as a client without kube-rs sees it.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(s: &TestServer) -> Api {
        Api {
            http: s.http(),
            base: s.base_url(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            r = r
                .header("content-type", content_type.unwrap_or("application/json"))
                .body(b.to_string());
        }
        let resp = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn want(
        &self,
        method: Method,
        path: &str,
        ct: Option<&str>,
        body: Option<&Value>,
        codes: &[u16],
    ) -> Value {
        let (code, v) = self.call(method.clone(), path, ct, body).await;
        assert!(codes.contains(&code), "{method} {path}: {code} {v}");
        v
    }

    pub async fn create(&self, ns: &str, obj: &Value) -> Value {
        self.want(Method::POST, &agents(ns), None, Some(obj), &[201])
            .await
    }

    pub async fn merge(&self, ns: &str, name: &str, patch: Value) -> Value {
        let path = format!("{}/{name}", agents(ns));
        self.want(
            Method::PATCH,
            &path,
            Some("application/merge-patch+json"),
            Some(&patch),
            &[200],
        )
        .await
    }

    pub async fn merge_status(&self, ns: &str, name: &str, patch: Value) -> Value {
        let path = format!("{}/{name}/status", agents(ns));
        self.want(
            Method::PATCH,
            &path,
            Some("application/merge-patch+json"),
            Some(&patch),
            &[200],
        )
        .await
    }

    pub async fn json_patch(&self, ns: &str, name: &str, patch: Value) -> Value {
        let path = format!("{}/{name}", agents(ns));
        self.want(
            Method::PATCH,
            &path,
            Some("application/json-patch+json"),
            Some(&patch),
            &[200],
        )
        .await
    }

    pub async fn delete(&self, ns: &str, name: &str) -> Value {
        let path = format!("{}/{name}", agents(ns));
        self.want(Method::DELETE, &path, None, None, &[200, 202])
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None, None).await
    }

    /// A GET that must answer 200.
    pub async fn list(&self, path: &str) -> Value {
        self.want(Method::GET, path, None, None, &[200]).await
    }

    /// Opens a watch; it must answer 200.
    pub async fn watch(&self, path: &str) -> WatchStream {
        self.watch_accept(path, None).await
    }

    pub async fn watch_accept(&self, path: &str, accept: Option<&str>) -> WatchStream {
        let (code, w) = self.try_watch(path, accept).await;
        match w {
            Ok(w) => w,
            Err(body) => panic!("watch {path}: {code} {body}"),
        }
    }

    /// Opens a watch; a response other than 200 comes back as its status and body.
    pub async fn try_watch(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> (u16, Result<WatchStream, Value>) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        let resp = tokio::time::timeout(PATIENCE, r.send())
            .await
            .unwrap_or_else(|_| panic!("watch {path}: no response headers in {PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        let code = resp.status().as_u16();
        if code != 200 {
            let text = resp.text().await.unwrap_or_default();
            return (
                code,
                Err(serde_json::from_str(&text).unwrap_or(Value::String(text))),
            );
        }
        (
            code,
            Ok(WatchStream {
                resp,
                buf: Vec::new(),
                ended: false,
                path: path.to_string(),
            }),
        )
    }
}

/// What reading a watch for a while gave.
#[derive(Debug)]
pub enum Next {
    Event(Value),
    /// The response ended.
    End,
    /// Nothing arrived in time.
    Quiet,
}

/// A watch response: JSON lines read off the chunked body.
pub struct WatchStream {
    pub resp: reqwest::Response,
    buf: Vec<u8>,
    ended: bool,
    pub path: String,
}

impl WatchStream {
    pub fn content_type(&self) -> String {
        self.resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    pub async fn next_within(&mut self, d: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v = serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!(
                        "watch {} sent a line that is not JSON ({e}): {}",
                        self.path,
                        String::from_utf8_lossy(line)
                    )
                });
                return Next::Event(v);
            }
            if self.ended {
                assert!(
                    self.buf.iter().all(u8::is_ascii_whitespace),
                    "watch {} ended inside a line: {}",
                    self.path,
                    String::from_utf8_lossy(&self.buf)
                );
                return Next::End;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Next::Quiet,
                Ok(Ok(Some(b))) => self.buf.extend_from_slice(&b),
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(e)) => panic!("reading watch {}: {e}", self.path),
            }
        }
    }

    /// The next line, whatever its type.
    pub async fn next(&mut self) -> Value {
        match self.next_within(PATIENCE).await {
            Next::Event(v) => v,
            other => panic!("watch {}: expected an event, got {other:?}", self.path),
        }
    }

    /// The next event that is not a BOOKMARK.
    pub async fn next_event(&mut self) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] != "BOOKMARK" {
                return v;
            }
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next_event().await);
        }
        out
    }

    /// Asserts that nothing but bookmarks arrives for `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Next::Quiet => return,
                Next::Event(v) if v["type"] == "BOOKMARK" => {}
                other => panic!("watch {}: expected no event, got {other:?}", self.path),
            }
        }
    }

    /// Every line until the response ends; it must end within `d`.
    pub async fn until_end(&mut self, d: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Next::Event(v) => out.push(v),
                Next::End => return out,
                Next::Quiet => panic!(
                    "watch {} did not end within {d:?}; got {:?}",
                    self.path,
                    briefs(&out)
                ),
            }
        }
    }
}

/// Keys of a LIST response: (namespace, name) -> resourceVersion.
pub fn list_keys(list: &Value) -> BTreeMap<(String, String), u64> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| {
            (
                (
                    o["metadata"]["namespace"].as_str().unwrap().to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                ),
                rv_of(o),
            )
        })
        .collect()
}

// ---- kubectl get -w ----

/// A `kubectl get -w` running as a child process; its stdout read line by line.
struct KubectlWatch {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    printed: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl KubectlWatch {
    fn start(s: &TestServer, args: &[&str]) -> KubectlWatch {
        let home = std::env::temp_dir().join(format!(
            "ark-kubectl-home-{}-{}",
            std::process::id(),
            s.addr.port()
        ));
        let mut child = tokio::process::Command::new(kubectl_path())
            .args([
                "--server",
                &s.base_url(),
                "--insecure-skip-tls-verify",
                "--token",
                "test",
            ])
            .args(args)
            .env("HOME", &home)
            .env("KUBECONFIG", home.join("none"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", kubectl_path()));
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            sink.lock().unwrap().push_str(&s);
        });
        KubectlWatch {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            printed: Vec::new(),
            stderr,
        }
    }

    /// The next line kubectl prints, as whitespace-separated cells.
    async fn row(&mut self) -> Vec<String> {
        match tokio::time::timeout(PATIENCE, self.lines.next_line()).await {
            Ok(Ok(Some(l))) => {
                self.printed.push(l.clone());
                l.split_whitespace().map(str::to_string).collect()
            }
            other => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "kubectl printed no further line ({other:?}); stdout so far:\n{}\nstderr:\n{}",
                    self.printed.join("\n"),
                    self.stderr.lock().unwrap()
                )
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// NAME MODEL AVAILABLE AGE cells of a row (AVAILABLE may be blank); the AGE is checked.
fn agent_row(cells: &[String], printed: &[String]) -> (String, String, String) {
    let (name, model, available, age) = match cells {
        [n, m, a] => (n, m, "", a),
        [n, m, av, a] => (n, m, av.as_str(), a),
        _ => panic!("not an agent row: {cells:?} in\n{}", printed.join("\n")),
    };
    assert!(
        age.ends_with('s') || age.ends_with('m'),
        "AGE column {age:?} in\n{}",
        printed.join("\n")
    );
    let available = if available == "<none>" { "" } else { available };
    (name.clone(), model.clone(), available.to_string())
}

pub fn available(status: &str) -> Value {
    json!({"status": {"conditions": [{"type": "Available", "status": status,
        "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Checked", "message": "checked"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_prints_creates_updates_and_deletes_with_printer_columns() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("kw", &agent("first", json!({}))).await;

    let mut plain = KubectlWatch::start(&s, &["get", "agents", "-n", "kw", "-w"]);
    let mut events = KubectlWatch::start(
        &s,
        &["get", "agents", "-n", "kw", "-w", "--output-watch-events"],
    );
    let header = plain.row().await;
    assert_eq!(header, ["NAME", "MODEL", "AVAILABLE", "AGE"]);
    let first = plain.row().await;
    assert_eq!(
        agent_row(&first, &plain.printed),
        ("first".into(), "m1".into(), "".into())
    );
    let header = events.row().await;
    assert_eq!(header, ["EVENT", "NAME", "MODEL", "AVAILABLE", "AGE"]);
    let row = events.row().await;
    assert_eq!(row[0], "ADDED", "{:?}", events.printed);
    assert_eq!(
        agent_row(&row[1..], &events.printed),
        ("first".into(), "m1".into(), "".into())
    );

    // Both kubectls have listed; everything from here on comes through their watches.
    api.create("kw", &agent("second", json!({}))).await;
    api.merge(
        "kw",
        "second",
        json!({"spec": {"modelRef": {"name": "m2"}}}),
    )
    .await;
    api.merge_status("kw", "first", available("True")).await;
    api.delete("kw", "second").await;

    let want = [
        ("ADDED", "second", "m1", ""),
        ("MODIFIED", "second", "m2", ""),
        ("MODIFIED", "first", "m1", "True"),
        ("DELETED", "second", "m2", ""),
    ];
    for (ty, name, model, avail) in want {
        let row = plain.row().await;
        assert_eq!(
            agent_row(&row, &plain.printed),
            (name.to_string(), model.to_string(), avail.to_string()),
            "kubectl get -w, {ty} {name}:\n{}",
            plain.printed.join("\n")
        );
        let row = events.row().await;
        assert_eq!(row[0], ty, "{}", events.printed.join("\n"));
        assert_eq!(
            agent_row(&row[1..], &events.printed),
            (name.to_string(), model.to_string(), avail.to_string()),
            "kubectl get -w --output-watch-events:\n{}",
            events.printed.join("\n")
        );
    }
    plain.stop().await;
    events.stop().await;
    s.stop().await;
}

// ---- resourceVersion start points ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_resource_version_or_from_zero_sends_the_current_state_then_changes() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let a1 = api.create("rv", &agent("a1", json!({}))).await;
    let a2 = api.create("rv", &agent("a2", json!({}))).await;
    let created: BTreeSet<(String, u64)> = [&a1, &a2]
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                rv_of(o),
            )
        })
        .collect();

    let mut unset = api.watch(&format!("{}?watch=true", agents("rv"))).await;
    let mut zero = api
        .watch(&format!("{}?watch=true&resourceVersion=0", agents("rv")))
        .await;
    for w in [&mut unset, &mut zero] {
        let initial = w.take(2).await;
        for ev in &initial {
            assert_eq!(ev["type"], "ADDED", "{}: {}", w.path, brief(ev));
            assert_eq!(ev["object"]["kind"], "Agent");
            assert_eq!(ev["object"]["apiVersion"], "ark.mckinsey.com/v1alpha1");
            assert_eq!(ev["object"]["spec"]["modelRef"]["name"], "m1");
        }
        let got: BTreeSet<(String, u64)> = initial
            .iter()
            .map(|e| {
                (
                    e["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    rv_of(&e["object"]),
                )
            })
            .collect();
        assert_eq!(got, created, "{}", w.path);
        w.assert_quiet(Duration::from_millis(300)).await;
    }

    let a3 = api.create("rv", &agent("a3", json!({}))).await;
    let m1 = api
        .merge("rv", "a1", json!({"metadata": {"labels": {"x": "1"}}}))
        .await;
    api.delete("rv", "a2").await;
    for w in [&mut unset, &mut zero] {
        let evs = w.take(3).await;
        assert_eq!(
            evs.iter().map(tn).collect::<Vec<_>>(),
            pairs(&[("ADDED", "a3"), ("MODIFIED", "a1"), ("DELETED", "a2")]),
            "{}",
            w.path
        );
        assert_eq!(rv_of(&evs[0]["object"]), rv_of(&a3));
        assert_eq!(rv_of(&evs[1]["object"]), rv_of(&m1));
        assert_eq!(evs[1]["object"]["metadata"]["labels"]["x"], "1");
        assert!(rv_of(&evs[2]["object"]) > rv_of(&m1), "{}", brief(&evs[2]));
        w.assert_quiet(Duration::from_millis(300)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_sends_exactly_the_later_events() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let _b1 = api.create("rv", &agent("b1", json!({}))).await;
    let b2 = api.create("rv", &agent("b2", json!({}))).await;
    let b3 = api.create("rv", &agent("b3", json!({}))).await;
    let from = rv_of(&b2);

    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={from}",
            agents("rv")
        ))
        .await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("ADDED".into(), "b3".into()), "{}", brief(&ev));
    assert_eq!(rv_of(&ev["object"]), rv_of(&b3));
    w.assert_quiet(Duration::from_millis(500)).await;

    let m = api
        .merge("rv", "b1", json!({"spec": {"prompt": "changed"}}))
        .await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "b1".into()));
    assert_eq!(ev["object"]["spec"]["prompt"], "changed");
    assert_eq!(rv_of(&ev["object"]), rv_of(&m));
    w.assert_quiet(Duration::from_millis(300)).await;

    // From the newest resourceVersion: nothing until the next change.
    let mut w2 = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={}",
            agents("rv"),
            rv_of(&m)
        ))
        .await;
    w2.assert_quiet(Duration::from_millis(500)).await;
    api.delete("rv", "b3").await;
    for w in [&mut w, &mut w2] {
        let ev = w.next_event().await;
        assert_eq!(tn(&ev), ("DELETED".into(), "b3".into()), "{}", w.path);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_older_than_the_history_gets_410_expired_event() {
    let s = TestServer::start_with(|o| {
        o.watch.history.max_events_per_kind = 3;
        // Trimmed at once, not after the newest events' grace period.
        o.watch.history.keep_recent = std::time::Duration::ZERO;
    })
    .await;
    let api = Api::new(&s);
    let mut rvs = Vec::new();
    for i in 0..6 {
        rvs.push(rv_of(
            &api.create("old", &agent(&format!("c{i}"), json!({}))).await,
        ));
    }
    assert!(rvs.windows(2).all(|w| w[1] == w[0] + 1), "{rvs:?}");
    // A consistent LIST: the state has applied every create before the watches below.
    assert_eq!(rv_of(&api.list(&agents("old")).await), rvs[5]);
    // The history holds the last three events (c3, c4, c5): a watch can start at c2's rv.
    let oldest = rvs[2];
    for form in [
        format!("{}?watch=true&resourceVersion={}", agents("old"), rvs[0]),
        format!(
            "{GV}/watch/namespaces/old/agents?resourceVersion={}",
            rvs[1]
        ),
    ] {
        let requested: u64 = form.rsplit('=').next().unwrap().parse().unwrap();
        let mut w = api.watch(&form).await;
        let lines = w.until_end(PATIENCE).await;
        assert_eq!(
            lines,
            vec![json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {requested} ({oldest})"),
                "reason": "Expired", "code": 410}})],
            "{form}"
        );
    }
    // The number in parentheses is a point a watch can start from.
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={oldest}",
            agents("old")
        ))
        .await;
    let evs = w.take(3).await;
    assert_eq!(
        evs.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[("ADDED", "c3"), ("ADDED", "c4"), ("ADDED", "c5")])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_not_yet_reached_times_out_after_about_3s_with_504() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let a = api.create("new", &agent("a", json!({}))).await;
    let current = rv_of(&api.list(&agents("new")).await);
    assert!(current >= rv_of(&a));
    let requested = current + 1000;
    let started = Instant::now();
    let resp = api
        .http
        .get(format!(
            "{}{}?watch=true&resourceVersion={requested}",
            api.base,
            agents("new")
        ))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status().as_u16(), 504);
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], 504, "{body}");
    assert_eq!(body["reason"], "Timeout", "{body}");
    assert_eq!(
        body["message"],
        format!("Too large resource version: {requested}, current: {current}"),
        "{body}"
    );
    assert_eq!(body["details"]["retryAfterSeconds"], 1, "{body}");
    // client-go recognises this error (and relists) by this cause.
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_reached_during_the_wait_starts_there() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("soon", &agent("a", json!({}))).await;
    let current = rv_of(&api.list(&agents("soon")).await);
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            api.create("soon", &agent("b", json!({}))).await;
            api.create("soon", &agent("c", json!({}))).await
        })
    };
    // current + 2 is c's resourceVersion: the watch starts after it.
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={}",
            agents("soon"),
            current + 2
        ))
        .await;
    let c = writer.await.unwrap();
    assert_eq!(rv_of(&c), current + 2);
    w.assert_quiet(Duration::from_millis(300)).await;
    api.delete("soon", "a").await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("DELETED".into(), "a".into()));
    s.stop().await;
}
