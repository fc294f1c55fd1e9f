//! PostgreSQL fails over too: a physical standby (pg_basebackup) promoted after the
//! primary dies, reached through a multi-host connection string with
//! `target_session_attrs=read-write`. Before PostgreSQL 17 logical slots do not survive a
//! promotion, and with asynchronous replication the standby may have lost the last commits:
//! the replicas must treat it as a gap (one re-seed, 410 to open watches), never serve the
//! old primary's state as current, and never let a resourceVersion name two states.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use ark_apiserver::embedded::Cluster;

use crate::harness::connect;
use crate::replicas::kill;
use crate::startup_failures::{http, Serve};
use crate::stream_faults::{
    agent, agents_path, dedicated_cluster, eventually, on_cluster, wait_ready,
};
use crate::watch::rv_of;

const NS: &str = "failover";

async fn create(base: &str, name: &str) -> Value {
    let r = http()
        .post(format!("{base}{}", agents_path(NS)))
        .json(&agent(name, "v1"))
        .send()
        .await
        .unwrap();
    let code = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(code, 201, "create {name}: {body}");
    body
}

async fn get(base: &str, name: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{base}{}/{name}", agents_path(NS)))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn list(base: &str) -> Result<(u64, Vec<String>), String> {
    let r = http()
        .get(format!("{base}{}", agents_path(NS)))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("LIST: {}", r.status()));
    }
    let l: Value = r.json().await.map_err(|e| e.to_string())?;
    let mut names: Vec<String> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    Ok((rv_of(&l), names))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_that_lost_the_last_commits_is_a_gap_and_no_resource_version_names_two_states(
) {
    lost_commits_are_a_gap(Takeover::Race).await;
}

/// The state a follower relayed came from the old primary's timeline: when it takes the
/// slot on the promoted standby, where a slot already exists (pre-17 slots do not survive
/// promotion; someone created this one on the new timeline, at positions below the
/// follower's), the slot says nothing about the follower's state: it re-seeds, and its
/// watches get 410. The stalled leader, resumed, follows and re-seeds for the new timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_taking_a_slot_created_on_the_promoted_standby_re_seeds_instead_of_serving_lost_commits(
) {
    lost_commits_are_a_gap(Takeover::FollowerOntoExistingSlot).await;
}

#[derive(PartialEq)]
enum Takeover {
    /// Both replicas run on: whichever gets the new primary's slot first leads.
    Race,
    /// The leader is stopped (SIGSTOP) before the crash and the slot is created on the
    /// new primary before the follower reaches it.
    FollowerOntoExistingSlot,
}

async fn lost_commits_are_a_gap(takeover: Takeover) {
    let primary = dedicated_cluster(None).await;
    connect(&primary.url("postgres"))
        .await
        .batch_execute("CREATE DATABASE ark")
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "ark-standby-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let standby = {
        let (p, d) = (primary.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            p.base_backup(&d)?;
            let s = Cluster::start_standby(&d, p.port())?;
            s.stop_when_process_exits()?;
            Ok::<_, ark_apiserver::embedded::EmbeddedError>(Arc::new(s))
        })
        .await
        .unwrap()
        .expect("a standby")
    };
    let url = format!(
        "postgres://ark@127.0.0.1:{},127.0.0.1:{}/ark?sslmode=disable&target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let a = Serve::start(&url, &["--replica-id", "a", "--replication-timeout", "3s"]);
    wait_ready(&http(), &a.base, Duration::from_secs(60)).await;
    let b = Serve::start(&url, &["--replica-id", "b", "--replication-timeout", "3s"]);
    wait_ready(&http(), &b.base, Duration::from_secs(60)).await;

    // Replicated to the standby before it stops replaying.
    create(&a.base, "kept-1").await;
    create(&b.base, "kept-2").await;
    let on_standby = connect(&standby.url("ark")).await;
    eventually(
        "the standby has replayed the kept writes",
        Duration::from_secs(20),
        || async {
            let n: i64 = on_standby
                .query_one(
                    "SELECT count(*) FROM resources WHERE name LIKE 'kept-%'",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{n} of 2"))
            }
        },
    )
    .await;
    drop(on_standby);
    on_cluster(&standby, |s| s.pause()).await;

    // Acknowledged by the old primary, and lost with it; two WAL segments further on, so
    // that their positions are above anything the new timeline writes in this test.
    let old = connect(&primary.url("ark")).await;
    for _ in 0..2 {
        old.batch_execute("CREATE TEMP TABLE w(); DROP TABLE w; SELECT pg_switch_wal()")
            .await
            .unwrap();
    }
    drop(old);
    let lost = create(&a.base, "lost-1").await;
    create(&b.base, "lost-2").await;
    let mut served = rv_of(&lost);
    for base in [&a.base, &b.base] {
        served = served.max(list(base).await.unwrap().0);
    }
    let (_, before) = list(&b.base).await.unwrap();
    assert_eq!(before, ["kept-1", "kept-2", "lost-1", "lost-2"]);
    let watch = http()
        .get(format!(
            "{}{}?watch=1&resourceVersion={served}",
            b.base,
            agents_path(NS)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);

    // The primary dies; the standby comes back and is promoted.
    let t = std::time::Instant::now();
    if takeover == Takeover::FollowerOntoExistingSlot {
        kill(a.pid(), "-STOP");
    }
    on_cluster(&primary, |p| p.crash()).await;
    on_cluster(&standby, |s| s.resume()).await;
    on_cluster(&standby, |s| s.promote()).await;
    if takeover == Takeover::FollowerOntoExistingSlot {
        let new = connect(&standby.url("ark")).await;
        new.batch_execute("SELECT pg_create_logical_replication_slot('ark_cdc', 'pgoutput')")
            .await
            .expect("the slot on the new primary, before the follower's lease wait is over");
    }

    // The open watch ends with 410 Expired (its client relists).
    let body = tokio::time::timeout(Duration::from_secs(60), watch.text())
        .await
        .unwrap_or_else(|_| panic!("the watch did not end\n{}\n---\n{}", b.stderr(), a.stderr()))
        .unwrap_or_default();
    assert!(
        body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":410"),
        "the watch did not end with 410: {body}\n{}",
        b.stderr()
    );
    if takeover == Takeover::FollowerOntoExistingSlot {
        kill(a.pid(), "-CONT");
    }
    // Both replicas serve the new primary's state, without the lost commits, at a
    // resourceVersion above every one served before the failover.
    for s in [&a, &b] {
        eventually(
            "the replica serves the new primary's state",
            Duration::from_secs(60),
            || async {
                let tail = || {
                    let e = s.stderr();
                    e[e.len().saturating_sub(3000)..].to_string()
                };
                let (rv, names) = list(&s.base)
                    .await
                    .map_err(|e| format!("{e}\n{}", tail()))?;
                if names == ["kept-1", "kept-2"] && rv > served {
                    Ok(())
                } else {
                    Err(format!("rv {rv} (served {served}), {names:?}"))
                }
            },
        )
        .await;
        assert_eq!(get(&s.base, "lost-1").await.0, 404);
    }
    eprintln!(
        "after the promotion, both replicas served the new primary's state within {:?}",
        t.elapsed()
    );
    // A new write never reuses a resourceVersion that named a lost state.
    let after = create(&b.base, "after").await;
    assert!(
        rv_of(&after) > served,
        "{after} reuses a served resourceVersion (≤ {served})"
    );
    let again = create(&a.base, "lost-1").await;
    assert!(rv_of(&again) > served, "{again}");
    let on_new = connect(&standby.url("ark")).await;
    let holders: i64 = on_new
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ark_cdc' AND active",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holders, 1);
    drop(a);
    drop(b);
    on_cluster(&standby, |s| s.pause()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
