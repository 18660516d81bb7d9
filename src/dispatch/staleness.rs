//! How far behind the leader, in time, a node's data is — for `bounded` reads (`max_lag_ms`).
//!
//! Definition. The *leader* is the node that leads with a live lease (a quorum acknowledged it
//! within the election timeout, so no other leader can have been elected): its applied index
//! holds every write the cluster acknowledged (a write is acknowledged after the leader applies
//! it), so its staleness is 0. After each health-probe round that reached the leader — this
//! node leading, or a probe answer saying "leading" — this node records *(when the round's
//! probes were sent, the leader's applied index)*; the leader had applied at least that by
//! then. A node that has applied index `i` holds every write the leader had applied by the
//! time of the newest recorded round whose index is at most `i`; the node's *staleness* is the
//! time since that round. So a follower that keeps up is about one probe interval (200 ms by
//! default) stale, and one that stops applying grows staler by the clock from the moment the
//! leader passed it, whatever it reports. Rounds that did not reach a leader are not recorded:
//! a node cut off from the leader (a minority partition) sees every node's staleness grow,
//! its own included, and refuses bounded reads once the bound has passed instead of taking
//! the highest index it can still see for the cluster's. A node behind every remembered round
//! (about [`ROUNDS`] intervals) has no known staleness and serves no bounded read. The applied
//! index of another node is the one its last probe answer reported.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dispatch::load::HealthReport;
use crate::raft::types::LogIndex;

/// Rounds remembered: at the default 200 ms interval, about 13 seconds.
pub const ROUNDS: usize = 64;

/// The leader's applied index a probe round learned: `own`, this node's applied index if it
/// leads with a live lease, else the highest that an answer saying "leading" reported (every
/// answer came after the round's probes were sent, so it covers every write acknowledged by
/// then); `None` when the round reached no leader.
pub fn leader_index<'r>(
    own: Option<LogIndex>,
    answers: impl IntoIterator<Item = &'r HealthReport>,
) -> Option<LogIndex> {
    answers
        .into_iter()
        .filter(|report| report.leading)
        .map(|report| report.applied)
        .chain(own)
        .max()
}

/// The recorded rounds, newest last.
#[derive(Debug, Default)]
pub struct Staleness {
    rounds: Mutex<VecDeque<(Instant, LogIndex)>>,
}

impl Staleness {
    /// Records a probe round sent at `at` that learned the leader's applied index,
    /// `leader_applied`.
    pub fn record_round(&self, at: Instant, leader_applied: LogIndex) {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        // Applied indexes only grow; a lower report (a new leader still applying what the
        // old one had) must not make older rounds look fresher.
        let highest = rounds
            .back()
            .map_or(leader_applied, |(_, i)| leader_applied.max(*i));
        rounds.push_back((at, highest));
        while rounds.len() > ROUNDS {
            rounds.pop_front();
        }
    }

    /// How stale a node that has applied `applied` is at `now`; `None` if it is behind every
    /// recorded round (or none was recorded yet).
    pub fn of(&self, applied: LogIndex, now: Instant) -> Option<Duration> {
        let rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds
            .iter()
            .rev()
            .find(|(_, index)| *index <= applied)
            .map(|(at, _)| now.saturating_duration_since(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_is_the_age_of_the_newest_round_a_node_has_caught_up_with() {
        let staleness = Staleness::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(staleness.of(100, at(0)), None, "nothing recorded yet");
        staleness.record_round(at(0), 10);
        staleness.record_round(at(200), 20);
        staleness.record_round(at(400), 30);
        assert_eq!(staleness.of(30, at(450)), Some(Duration::from_millis(50)));
        assert_eq!(staleness.of(25, at(450)), Some(Duration::from_millis(250)));
        assert_eq!(staleness.of(10, at(450)), Some(Duration::from_millis(450)));
        assert_eq!(staleness.of(9, at(450)), None, "behind every round");
        // A lower report later does not lower the recorded cluster index.
        staleness.record_round(at(600), 5);
        assert_eq!(staleness.of(29, at(600)), Some(Duration::from_millis(400)));
    }

    #[test]
    fn a_round_counts_only_what_a_leader_reported() {
        let answer = |applied, leading| HealthReport {
            applied,
            leading,
            ..HealthReport::default()
        };
        let followers = [answer(90, false), answer(95, false)];
        assert_eq!(leader_index(None, &followers), None, "no leader reached");
        assert_eq!(
            leader_index(Some(80), &followers),
            Some(80),
            "this node leads"
        );
        let with_leader = [answer(95, false), answer(100, true)];
        assert_eq!(leader_index(None, &with_leader), Some(100));
        assert_eq!(leader_index(None, &[]), None, "nothing answered");
    }

    #[test]
    fn only_the_last_rounds_are_kept() {
        let staleness = Staleness::default();
        let start = Instant::now();
        for i in 0..(ROUNDS as u64 + 10) {
            staleness.record_round(start + Duration::from_millis(i), i);
        }
        assert_eq!(staleness.of(9, start), None, "round 9 was forgotten");
        assert!(staleness.of(10, start + Duration::from_secs(1)).is_some());
    }
}
