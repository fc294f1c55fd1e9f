//! Mixed load, the published harness's mix: 60% create, 20% get, 10% list, 10% delete, on
//! one namespace seeded with objects. First at a target rate (open loop: does the server
//! keep up, and at what latency), then at saturation (closed loop: how many operations per
//! second it completes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::api::{self, Api};
use crate::stats::{closed_loop, open_loop, Samples};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Get,
    List,
    Delete,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }

    fn pick(r: u32) -> Op {
        match r % 100 {
            0..=59 => Op::Create,
            60..=79 => Op::Get,
            80..=89 => Op::List,
            _ => Op::Delete,
        }
    }
}

pub struct MixedResult {
    pub all: Samples,
    pub by_op: Vec<(Op, Samples)>,
}

/// The objects that exist, so gets and deletes aim at real names. A delete takes its name
/// out first, so two deletes never race for one object (that would be a 404, not load).
struct Live {
    names: Mutex<Vec<String>>,
    next: AtomicUsize,
    by_op: Mutex<HashMap<Op, Samples>>,
}

pub struct MixedPlan {
    pub namespace: String,
    pub seed: usize,
}

pub struct Mixed {
    api: Api,
    ns: String,
    live: Arc<Live>,
}

impl Mixed {
    pub async fn seed(api: Api, plan: &MixedPlan) -> Result<Mixed, String> {
        let ns = plan.namespace.clone();
        let (a, n2) = (api.clone(), ns.clone());
        let s = closed_loop(16, plan.seed, move |i| {
            let (a, ns) = (a.clone(), n2.clone());
            async move {
                a.create(
                    "queries",
                    &ns,
                    api::query(&format!("m-{i}"), &ns, "bench-agent"),
                )
                .await
            }
        })
        .await;
        if s.errors > 0 {
            return Err(format!("seeding the mixed namespace: {:?}", s.first_errors));
        }
        Ok(Mixed {
            api,
            ns,
            live: Arc::new(Live {
                names: Mutex::new((0..plan.seed).map(|i| format!("m-{i}")).collect()),
                next: AtomicUsize::new(plan.seed),
                by_op: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn op(
        &self,
    ) -> impl Fn(
        usize,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
           + Send
           + Sync
           + 'static {
        let (api, ns, live) = (self.api.clone(), self.ns.clone(), Arc::clone(&self.live));
        move |_| {
            let (api, ns, live) = (api.clone(), ns.clone(), Arc::clone(&live));
            Box::pin(async move {
                let op = Op::pick(rand::rng().random());
                let t = Instant::now();
                let r = match op {
                    Op::Create => {
                        let name = format!("m-{}", live.next.fetch_add(1, Ordering::Relaxed));
                        let r = api
                            .create("queries", &ns, api::query(&name, &ns, "bench-agent"))
                            .await;
                        if r.is_ok() {
                            live.names.lock().unwrap().push(name);
                        }
                        r
                    }
                    Op::Get => {
                        let name = random_name(&live, false);
                        match name {
                            Some(n) => api.get("queries", &ns, &n).await.map(drop).or_else(|e| {
                                // Deleted between the pick and the GET: not a failure.
                                if e.contains("HTTP 404") {
                                    Ok(())
                                } else {
                                    Err(e)
                                }
                            }),
                            None => Ok(()),
                        }
                    }
                    Op::List => api.list("queries", Some(&ns), "").await.map(drop),
                    Op::Delete => match random_name(&live, true) {
                        Some(n) => api.delete("queries", &ns, &n).await,
                        None => Ok(()),
                    },
                };
                let lat = t.elapsed();
                let mut by_op = live.by_op.lock().unwrap();
                let s = by_op.entry(op).or_default();
                match &r {
                    Ok(()) => s.latencies.push(lat),
                    Err(e) => s.record_error(e.clone()),
                }
                r
            })
        }
    }

    fn take_by_op(&self, elapsed: Duration) -> Vec<(Op, Samples)> {
        let mut m = std::mem::take(&mut *self.live.by_op.lock().unwrap());
        [Op::Create, Op::Get, Op::List, Op::Delete]
            .into_iter()
            .map(|op| {
                let mut s = m.remove(&op).unwrap_or_default();
                s.elapsed = elapsed;
                (op, s)
            })
            .collect()
    }

    /// Operations started at `rate` per second for `duration`, whatever the latency.
    pub async fn at_rate(&self, rate: f64, duration: Duration) -> MixedResult {
        let all = open_loop(rate, duration, 2048, self.op()).await;
        let by_op = self.take_by_op(all.elapsed);
        MixedResult { all, by_op }
    }

    /// `concurrency` workers issuing operations back to back for about `duration`.
    pub async fn saturated(&self, concurrency: usize, duration: Duration) -> MixedResult {
        // Calibrated by count: a short probe tells roughly how many operations fit.
        let probe = closed_loop(concurrency, concurrency * 10, self.op()).await;
        let _ = self.take_by_op(probe.elapsed);
        let per_sec = probe.summary().ops_per_sec.max(10.0);
        let n = (per_sec * duration.as_secs_f64()) as usize;
        let all = closed_loop(concurrency, n.max(concurrency), self.op()).await;
        let by_op = self.take_by_op(all.elapsed);
        MixedResult { all, by_op }
    }
}

fn random_name(live: &Live, remove: bool) -> Option<String> {
    let mut names = live.names.lock().unwrap();
    if names.is_empty() {
        return None;
    }
    let i = rand::rng().random_range(0..names.len());
    Some(if remove {
        names.swap_remove(i)
    } else {
        names[i].clone()
    })
}
