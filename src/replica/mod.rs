//! Several replicas on one database: who consumes the slot, how the others get its
//! transactions, and what each tells the others through PostgreSQL.
//!
//! **Roles.** The leader is whichever replica holds the replication slot: PostgreSQL lets
//! one walsender at a time stream from a slot, so the slot is the election and its
//! `active` flag the lease, with nothing else to expire. Every other replica is a
//! follower: it finds the leader through PostgreSQL (the `ark_replicas` row whose
//! application name the slot's walsender carries), reads the leader's relay log over the
//! internal stream, and feeds the same consumer the leader's own stream feeds. State,
//! history, resourceVersions and events are so identical on every replica, and every
//! replica serves every verb from its own memory.
//!
//! **Failover.** A follower whose stream from the leader ends (connection closed, or three
//! seconds without even a heartbeat) tries the slot at once, and keeps trying every
//! quarter second while it is held. A killed leader's walsender exits with its connection;
//! a hung one is cut off by the walsender timeout this server sets on its replication
//! connection. The new leader resumes the slot from its confirmed position, which the old
//! leader never moved past what its connected followers had applied, so it replays a
//! little and skips it by resourceVersion, and loses nothing.
//!
//! **The internal stream** is HTTPS on the API port, outside the API's authentication:
//! a follower presents the leader's secret, which only readers of the database's tables
//! can see, and pins the leader's serving certificate to the SHA-256 published beside it.
//!
//! `log` and `frame` are pure; `follow` is the follower's client; the leader's side of the
//! stream is `api::replication`, and the rows are `store::replicas`.

pub mod follow;
pub mod frame;
pub mod log;
pub mod peer_tls;
mod run;

pub use run::run;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};

pub use log::{Entry, LogLimits, RelayLog};

use crate::store::replicas::ReplicaRecord;

/// How often a replica reports how far it has applied (and refreshes its row).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A replica whose row is older than this is not counted (gone, or cut off).
pub const FRESH: Duration = Duration::from_secs(5);
/// A follower that hears nothing from the leader for this long (the leader relays a
/// heartbeat every second) drops the stream and tries the slot.
pub const SILENCE: Duration = Duration::from_secs(3);
/// How often a follower whose leader is gone tries the slot.
pub const TRY_SLOT_EVERY: Duration = Duration::from_millis(250);

/// This replica's name and how the others reach it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Unique among the replicas of a slot; part of the replication connection's
    /// application name, so at most 45 bytes.
    pub id: String,
    /// `host:port` the other replicas reach this one at.
    pub advertise: String,
    /// The secret a follower presents to read this replica's relay. Random per start.
    pub token: String,
}

impl Identity {
    /// `id` if given, else the host name and a random suffix; `advertise` as given.
    pub fn new(id: Option<String>, advertise: String) -> Identity {
        let id = id.unwrap_or_else(|| {
            let host = hostname();
            let mut suffix = [0u8; 4];
            rand::rng().fill_bytes(&mut suffix);
            let host: String = host.chars().take(36).collect();
            format!("{host}-{}", hex(&suffix))
        });
        let mut token = [0u8; 32];
        rand::rng().fill_bytes(&mut token);
        Identity {
            id,
            advertise,
            token: hex(&token),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ark-apiserver".into())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of a certificate's DER, lower-case hex: what followers pin.
pub fn cert_sha256(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// What this replica is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Trying the slot, or between roles.
    Candidate,
    /// Consuming the slot.
    Leader,
    /// Reading the leader's relay.
    Follower { leader_id: String, leader: String },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Follower { .. } => "follower",
        }
    }
}

/// Shared by the stream task, the HTTP side and the reporter.
pub struct Replica {
    pub identity: Identity,
    pub slot: String,
    pub log: RelayLog,
    role: Mutex<Role>,
    role_changed: tokio::sync::watch::Sender<u64>,
    /// The lowest position the connected followers have applied (u64::MAX: no follower):
    /// the leader confirms no further to the slot.
    floor: AtomicU64,
    /// Followers reading this replica's relay now, by id, with their connection counts.
    readers: Mutex<HashMap<String, usize>>,
    /// The leader's clock of the last entry applied, µs since the epoch (followers).
    last_leader_at: AtomicU64,
    /// The leader's rv as last relayed (followers).
    leader_rv: AtomicU64,
    has_followed: AtomicBool,
    /// The cluster and timeline the state was streamed from (this replica's own session,
    /// or its leader's): a session on another timeline checks it before continuing.
    origin: Mutex<Option<crate::cdc::timeline::Origin>>,
}

impl Replica {
    pub fn new(identity: Identity, slot: String, limits: LogLimits) -> Arc<Replica> {
        Arc::new(Replica {
            identity,
            slot,
            log: RelayLog::new(limits),
            role: Mutex::new(Role::Candidate),
            role_changed: tokio::sync::watch::Sender::new(0),
            floor: AtomicU64::new(u64::MAX),
            readers: Mutex::new(HashMap::new()),
            last_leader_at: AtomicU64::new(0),
            leader_rv: AtomicU64::new(0),
            has_followed: AtomicBool::new(false),
            origin: Mutex::new(None),
        })
    }

    pub fn origin(&self) -> Option<crate::cdc::timeline::Origin> {
        self.origin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_origin(&self, origin: Option<crate::cdc::timeline::Origin>) {
        *self.origin.lock().unwrap_or_else(PoisonError::into_inner) = origin;
    }

    pub fn role(&self) -> Role {
        self.role
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asked on every relay read and housekeeping round: no clone of the role.
    pub fn is_leader(&self) -> bool {
        matches!(
            *self.role.lock().unwrap_or_else(PoisonError::into_inner),
            Role::Leader
        )
    }

    pub fn set_role(&self, role: Role) {
        let mut g = self.role.lock().unwrap_or_else(PoisonError::into_inner);
        if *g == role {
            return;
        }
        let was_leader = matches!(*g, Role::Leader);
        tracing::info!(from = g.name(), to = role.name(), leader = ?leader_of(&role), "replica role changed");
        if matches!(role, Role::Follower { .. }) {
            self.has_followed.store(true, Ordering::Relaxed);
        }
        if matches!(role, Role::Leader) && !was_leader && self.has_followed.load(Ordering::Relaxed)
        {
            // A follower took the slot over: a failover (a replica's first leadership at
            // start is not one).
            metrics::counter!("ark_replication_failovers_total").increment(1);
        }
        metrics::gauge!("ark_replication_leader").set(if matches!(role, Role::Leader) {
            1.0
        } else {
            0.0
        });
        *g = role;
        drop(g);
        self.role_changed.send_modify(|n| *n += 1);
        if was_leader {
            // Followers of a former leader are not followers any more.
            self.floor.store(u64::MAX, Ordering::Release);
        }
    }

    /// Changes whenever the role changes.
    pub fn role_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.role_changed.subscribe()
    }

    /// What this replica may confirm to the slot, having applied `applied`.
    pub fn confirmable(&self, applied: u64) -> u64 {
        applied.min(self.floor.load(Ordering::Acquire))
    }

    pub fn set_floor(&self, floor: Option<u64>) {
        self.floor
            .store(floor.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// A follower started reading; the guard ends the registration.
    pub fn reader_connected(self: &Arc<Self>, id: &str) -> ReaderGuard {
        *self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default() += 1;
        ReaderGuard {
            replica: Arc::clone(self),
            id: id.to_string(),
        }
    }

    /// The followers reading this replica's relay now.
    pub fn readers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Records the leader's clock and rv of an entry a follower applied.
    pub fn followed(&self, at_micros: Option<i64>, leader_rv: u64) {
        if let Some(at) = at_micros {
            self.last_leader_at
                .store(at.max(0) as u64, Ordering::Relaxed);
        }
        self.leader_rv.fetch_max(leader_rv, Ordering::Relaxed);
    }

    /// (events, seconds) this follower is behind the leader, as of the last entry: the
    /// leader's rv minus ours, and our clock minus the leader's when it relayed what we
    /// last applied. Zero on a leader.
    pub fn lag(&self, own_rv: u64) -> (u64, f64) {
        if !matches!(self.role(), Role::Follower { .. }) {
            return (0, 0.0);
        }
        let events = self
            .leader_rv
            .load(Ordering::Relaxed)
            .saturating_sub(own_rv);
        let at = self.last_leader_at.load(Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let secs = if at == 0 || events == 0 {
            0.0
        } else {
            now.saturating_sub(at) as f64 / 1e6
        };
        (events, secs)
    }

    /// This replica's row, with the certificate it serves now.
    pub fn record(&self, cert_der: &[u8]) -> ReplicaRecord {
        ReplicaRecord {
            replica_id: self.identity.id.clone(),
            slot: self.slot.clone(),
            address: self.identity.advertise.clone(),
            token: self.identity.token.clone(),
            cert_sha256: cert_sha256(cert_der),
        }
    }

    /// Whether `presented` is this replica's relay secret (compared in constant time).
    pub fn accepts_token(&self, presented: &str) -> bool {
        let (a, b) = (presented.as_bytes(), self.identity.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn leader_of(role: &Role) -> Option<&str> {
    match role {
        Role::Follower { leader, .. } => Some(leader),
        _ => None,
    }
}

/// Registration of one follower connection; dropped when the connection ends.
pub struct ReaderGuard {
    replica: Arc<Replica>,
    id: String,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut g = self
            .replica
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = g.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                g.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> Arc<Replica> {
        Replica::new(
            Identity::new(Some("r1".into()), "127.0.0.1:1".into()),
            "ark_cdc".into(),
            LogLimits::default(),
        )
    }

    #[test]
    fn generated_identities_fit_the_application_name_and_tokens_differ() {
        let a = Identity::new(None, "x:1".into());
        let b = Identity::new(None, "x:1".into());
        assert!(a.id.len() <= 45, "{}", a.id);
        assert_ne!(a.id, b.id);
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 64);
    }

    #[test]
    fn the_leader_confirms_no_further_than_its_followers_applied() {
        let r = replica();
        assert_eq!(r.confirmable(100), 100);
        r.set_floor(Some(40));
        assert_eq!(r.confirmable(100), 40);
        assert_eq!(r.confirmable(30), 30);
        r.set_role(Role::Leader);
        r.set_floor(Some(40));
        r.set_role(Role::Candidate);
        assert_eq!(r.confirmable(100), 100);
    }

    #[test]
    fn readers_are_counted_per_connection() {
        let r = replica();
        let a = r.reader_connected("f1");
        let b = r.reader_connected("f1");
        let _c = r.reader_connected("f2");
        assert_eq!(r.readers(), vec!["f1", "f2"]);
        drop(a);
        assert_eq!(r.readers(), vec!["f1", "f2"]);
        drop(b);
        assert_eq!(r.readers(), vec!["f2"]);
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let r = replica();
        let t = r.identity.token.clone();
        assert!(r.accepts_token(&t));
        assert!(!r.accepts_token(&t[..63]));
        assert!(!r.accepts_token(""));
        let mut other = t.into_bytes();
        other[0] ^= 1;
        assert!(!r.accepts_token(&String::from_utf8_lossy(&other)));
    }
}
