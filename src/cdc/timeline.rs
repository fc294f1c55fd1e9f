//! Which database history the in-memory state belongs to. Pure: IDENTIFY_SYSTEM and
//! TIMELINE_HISTORY answers in, a verdict out.
//!
//! A WAL position means something only on one timeline of one cluster. When PostgreSQL
//! fails over, the promoted standby starts a new timeline at the point where it stopped
//! replaying (the switch point); with asynchronous replication the old primary may have
//! committed past it, and those commits exist nowhere else. Before PostgreSQL 17 the
//! logical slot does not survive the promotion either, so the slot a replica finds on
//! the new primary is one someone created there: its positions say nothing about the
//! state this replica holds. The state carries its [`Origin`] (the cluster and timeline
//! it was streamed from) and its applied position; a session on another timeline may
//! continue it only when the new timeline branched off the state's at or after that
//! position. Anything else is a gap: re-seed, watches get 410.

use crate::pgoutput::Lsn;

/// The cluster and timeline a state was streamed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The cluster's system identifier (kept as text, as IDENTIFY_SYSTEM gives it).
    pub system_id: String,
    pub timeline: u32,
}

impl Origin {
    /// As followers receive it from their leader: `<system id>/<timeline>`.
    pub fn to_header(&self) -> String {
        format!("{}/{}", self.system_id, self.timeline)
    }

    pub fn from_header(s: &str) -> Option<Origin> {
        let (system_id, timeline) = s.trim().split_once('/')?;
        let ok = !system_id.is_empty() && system_id.bytes().all(|b| b.is_ascii_digit());
        Some(Origin {
            system_id: ok.then(|| system_id.to_string())?,
            timeline: timeline.parse().ok()?,
        })
    }
}

/// Whether a state streamed from one origin may continue on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuity {
    /// Same cluster, same timeline.
    Same,
    /// The current timeline descends from the state's and branched off it at or after
    /// the state's applied position: nothing the state holds was lost.
    Descends { switch_point: u64 },
    /// The state holds (or may hold) commits the current timeline does not have.
    Diverged(String),
}

/// Decides [`Continuity`] for a state at `applied` on `ours`, against a server on
/// `now` whose timeline history file is `history` (`None` when the server has none:
/// timeline 1).
pub fn continuity(ours: &Origin, applied: u64, now: &Origin, history: Option<&str>) -> Continuity {
    if ours.system_id != now.system_id {
        return Continuity::Diverged(format!(
            "the database is another cluster (system identifier {}, the state's {})",
            now.system_id, ours.system_id
        ));
    }
    if ours.timeline == now.timeline {
        return Continuity::Same;
    }
    let branched = history.and_then(|h| switch_point(h, ours.timeline));
    match branched {
        Some(at) if applied <= at => Continuity::Descends { switch_point: at },
        Some(at) => Continuity::Diverged(format!(
            "timeline {} branched off timeline {} at {}, before the {} this replica applied: the commits in between were lost with the old primary",
            now.timeline,
            ours.timeline,
            Lsn(at),
            Lsn(applied)
        )),
        None => Continuity::Diverged(format!(
            "the database is on timeline {}, which does not descend from timeline {} this replica streamed",
            now.timeline, ours.timeline
        )),
    }
}

/// Where the history leaves `timeline`: the switch point of its line in a history file
/// (`<parent timeline>\t<switch point>\t<reason>` per line, `#` comments). `None` when
/// the history does not pass through `timeline`, or a line cannot be read.
pub fn switch_point(history: &str, timeline: u32) -> Option<u64> {
    for line in history.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parent: u32 = fields.next()?.parse().ok()?;
        let at: Lsn = fields.next()?.parse().ok()?;
        if parent == timeline {
            return Some(at.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(timeline: u32) -> Origin {
        Origin {
            system_id: "7441234567890123456".into(),
            timeline,
        }
    }

    // As PostgreSQL writes 00000003.history after two promotions.
    const HISTORY_3: &str = "1\t0/3000158\tno recovery target specified\n\n2\t0/5000A28\tno recovery target specified\n";

    #[test]
    fn the_origin_survives_the_header_a_follower_reads_it_from() {
        let o = on(3);
        assert_eq!(Origin::from_header(&o.to_header()), Some(o));
        for bad in ["", "/3", "7441/", "abc/3", "7441/x", "7441"] {
            assert_eq!(Origin::from_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_same_timeline_continues() {
        assert_eq!(continuity(&on(2), 1 << 40, &on(2), None), Continuity::Same);
    }

    #[test]
    fn a_promotion_after_everything_the_state_applied_continues_it() {
        let c = continuity(&on(1), 0x3000158, &on(3), Some(HISTORY_3));
        assert_eq!(
            c,
            Continuity::Descends {
                switch_point: 0x3000158
            }
        );
        assert!(matches!(
            continuity(&on(2), 0x4000000, &on(3), Some(HISTORY_3)),
            Continuity::Descends { .. }
        ));
    }

    #[test]
    fn a_promotion_before_what_the_state_applied_lost_commits_and_is_a_gap() {
        let Continuity::Diverged(why) = continuity(&on(1), 0x3000160, &on(3), Some(HISTORY_3))
        else {
            panic!("applied past the switch point must diverge");
        };
        assert!(
            why.contains("0/3000158") && why.contains("0/3000160"),
            "{why}"
        );
        assert!(matches!(
            continuity(&on(2), 0x5000B00, &on(3), Some(HISTORY_3)),
            Continuity::Diverged(_)
        ));
    }

    #[test]
    fn a_timeline_that_does_not_descend_from_the_states_is_a_gap() {
        // A sibling (timeline 4 branched from 1, the state streamed 3), a state ahead of
        // the server (a standby promoted from an older backup), no history at all.
        let history_4 = "1\t0/3000158\tno recovery target specified\n";
        assert!(matches!(
            continuity(&on(3), 0x100, &on(4), Some(history_4)),
            Continuity::Diverged(_)
        ));
        assert!(matches!(
            continuity(&on(3), 0x100, &on(2), Some("1\t0/3000158\tx\n")),
            Continuity::Diverged(_)
        ));
        assert!(matches!(
            continuity(&on(1), 0x100, &on(2), None),
            Continuity::Diverged(_)
        ));
    }

    #[test]
    fn another_cluster_is_a_gap_whatever_its_timeline() {
        let other = Origin {
            system_id: "7000000000000000001".into(),
            timeline: 1,
        };
        assert!(matches!(
            continuity(&on(1), 0, &other, None),
            Continuity::Diverged(why) if why.contains("another cluster")
        ));
    }

    #[test]
    fn an_unreadable_history_line_finds_no_switch_point() {
        assert_eq!(switch_point("1\tnot-an-lsn\tx\n", 1), None);
        assert_eq!(switch_point("# comment\n1\t0/10\tx\n", 1), Some(0x10));
    }
}
