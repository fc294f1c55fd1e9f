//! One SQL statement that rewrites 200,000 objects: the kind of backfill the README
//! invites. The server holds the seeded objects cold (compressed) and builds most of
//! the transaction's objects cold as they arrive; none of that may show. A watcher that
//! was open before the statement gets every row's event, once, in commit order, with the
//! row's exact content, and reads after it agree with the events byte for byte.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{TestDb, TestServer};
use crate::watch::{rv_of, Api, Next};

const OBJECTS: i64 = 200_000;

/// The value of one series in the server's /metrics text, summed over its labels.
async fn metric(api: &Api, name: &str) -> f64 {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200000_row_statement_reaches_a_watcher_whole_in_commit_order_with_each_rows_content() {
    let db: TestDb = TestServer::start().await.stop_keeping_db().await;
    let c = db.client().await;
    // Through the triggers, as any writer: one resourceVersion per row.
    c.batch_execute(&format!(
        "INSERT INTO resources (uid, kind, api_version, namespace, name, spec, labels) \
         SELECT gen_random_uuid(), 'Agent', 'ark.mckinsey.com/v1alpha1', 'bulk', 'a-' || i, \
                jsonb_build_object('prompt', 'Answer questions about report ' || i || ' in three sentences.', \
                                   'description', 'agent number ' || i), \
                jsonb_build_object('team', 'team-' || (i % 7)) \
         FROM generate_series(1, {OBJECTS}) AS i"
    ))
    .await
    .unwrap();
    let server = TestServer::start_on(db).await;
    let api = Api::new(&server);
    let path = "/apis/ark.mckinsey.com/v1alpha1/namespaces/bulk/agents";
    let first = api.list(&format!("{path}?limit=1")).await;
    let from = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        metric(&api, "ark_watch_cold_objects").await >= OBJECTS as f64,
        "a seed of {OBJECTS} Agents should be held cold"
    );
    let mut w = api
        .watch(&format!("{path}?watch=true&resourceVersion={from}"))
        .await;

    let t = Instant::now();
    c.batch_execute(
        "UPDATE resources SET annotations = jsonb_build_object('backfill', 'v2', 'row', name) \
         WHERE namespace = 'bulk'",
    )
    .await
    .unwrap();
    eprintln!("UPDATE of {OBJECTS} rows took {:?}", t.elapsed());

    let mut seen = HashSet::new();
    let mut last_rv = from.parse::<u64>().unwrap();
    let mut samples = Vec::new();
    while seen.len() < OBJECTS as usize {
        let ev = match w.next_within(Duration::from_secs(120)).await {
            Next::Event(v) => v,
            other => panic!("after {} events: {other:?}", seen.len()),
        };
        if ev["type"] == "BOOKMARK" {
            continue;
        }
        assert_eq!(ev["type"], "MODIFIED", "{ev}");
        let o = &ev["object"];
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        let i: u64 = name.strip_prefix("a-").unwrap().parse().unwrap();
        let rv = rv_of(o);
        assert!(
            rv > last_rv,
            "{name} at rv {rv} after rv {last_rv}: not in commit order"
        );
        last_rv = rv;
        assert_eq!(o["metadata"]["annotations"]["row"], name.as_str(), "{o}");
        assert_eq!(o["metadata"]["labels"]["team"], format!("team-{}", i % 7));
        assert_eq!(
            o["spec"]["prompt"],
            format!("Answer questions about report {i} in three sentences.")
        );
        assert!(seen.insert(name.clone()), "{name} was sent twice");
        if i % 20_011 == 0 || i == 1 || i == OBJECTS as u64 {
            samples.push((name, o.clone()));
        }
    }
    eprintln!(
        "the watcher had all {OBJECTS} events {:?} after the statement began",
        t.elapsed()
    );
    assert!(
        metric(&api, "ark_watch_cold_objects").await > 0.0,
        "the backfill's objects should be built cold"
    );
    // Nothing more of this statement follows.
    match w.next_within(Duration::from_secs(2)).await {
        Next::Event(v) => assert_eq!(v["type"], "BOOKMARK", "an event after the last row: {v}"),
        Next::Quiet => {}
        Next::End => panic!("the watch ended"),
    }
    // Reads agree with the events, byte for byte as JSON values.
    for (name, sent) in &samples {
        let (code, got) = api.get(&format!("{path}/{name}")).await;
        assert_eq!(code, 200);
        assert_eq!(&got, sent, "GET {name} differs from its last event");
    }
    let all = api.list(path).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), OBJECTS as usize);
    let listed: HashSet<&str> = items
        .iter()
        .filter(|o| o["metadata"]["annotations"]["backfill"] == "v2")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), OBJECTS as usize);
    for (name, sent) in &samples {
        let item: &Value = items
            .iter()
            .find(|o| o["metadata"]["name"] == name.as_str())
            .unwrap();
        assert_eq!(item, sent, "LIST's {name} differs from its last event");
    }
    server.stop().await;
}
