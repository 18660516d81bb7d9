//! The conformance suite: properties every scheduler keeps, run against every
//! [`SchedulerKind`]. Per-algorithm scenarios with exact sequences live in each algorithm's
//! file; these are the promises the read path relies on whichever algorithm is configured:
//!
//! 1. a pick names an available candidate (eligible, weight > 0), and `None` only when there
//!    is none (for `ovf`: none with room), whatever the load, keys and changes in between;
//! 2. the same inputs and seed give the same picks;
//! 3. over many picks, the weights are respected as the algorithm means them: proportional
//!    shares for the weighted ones, equal shares for `rr` and `lc`, everything to the heaviest
//!    for `fo`, never past a node's weight for `ovf`.

use proptest::prelude::*;

use super::testing::{counts, scheduler, weighted};
use super::{Candidate, Scheduler, SchedulerKind, SeededRng};
use crate::raft::types::NodeId;

/// Up to 8 candidates with distinct ids in no particular order, mixed weights (0 included),
/// loads and eligibility.
fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (0u32..6, 0u32..12, 0u32..50, prop::bool::weighted(0.8)),
        0..8,
    )
    .prop_map(|nodes| {
        nodes
            .into_iter()
            .enumerate()
            .map(|(index, (weight, active, inactive, eligible))| Candidate {
                node: (index as NodeId * 37) % 101,
                weight,
                active,
                inactive,
                eligible,
            })
            .collect()
    })
}

/// One request: its key, and a change to one candidate (by position) made before it.
type Step = (Option<u64>, Option<(usize, u32, u32, bool)>);

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let key = prop::option::weighted(0.8, 0u64..16);
    let change = prop::option::weighted(0.3, (0usize..8, 0u32..6, 0u32..12, any::<bool>()));
    prop::collection::vec((key, change), 1..40)
}

/// Runs the steps, checking every pick; returns the picks.
fn run(
    kind: SchedulerKind,
    mut candidates: Vec<Candidate>,
    steps: &[Step],
    seed: u64,
) -> Result<Vec<Option<NodeId>>, TestCaseError> {
    let mut scheduler = scheduler(kind);
    let mut rng = SeededRng::new(seed);
    let mut picks = Vec::with_capacity(steps.len());
    for &(key, change) in steps {
        if let Some((position, weight, active, eligible)) = change
            && let Some(candidate) = candidates.get_mut(position)
        {
            (candidate.weight, candidate.active, candidate.eligible) = (weight, active, eligible);
        }
        // Keys spread over the u64 range, as hash_key's would.
        let key = key.map(super::hash::mix64);
        let may_take = |candidate: &Candidate| {
            candidate.is_available()
                && (kind != SchedulerKind::Ovf || candidate.active < candidate.weight)
        };
        let picked = scheduler.pick(&candidates, key, &mut rng);
        match picked {
            Some(node) => {
                let candidate = candidates.iter().find(|candidate| candidate.node == node);
                prop_assert!(
                    candidate.is_some_and(may_take),
                    "{kind} picked {node}, not a candidate that may take it: {candidates:?}"
                );
            }
            None => prop_assert!(
                !candidates.iter().any(may_take),
                "{kind} picked nothing though a candidate could serve: {candidates:?}"
            ),
        }
        picks.push(picked);
    }
    Ok(picks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_scheduler_picks_only_available_nodes(
        candidates in candidates(),
        steps in steps(),
        seed in any::<u64>(),
    ) {
        for kind in SchedulerKind::ALL {
            run(kind, candidates.clone(), &steps, seed)?;
        }
    }

    #[test]
    fn every_scheduler_is_deterministic_for_a_seed(
        candidates in candidates(),
        steps in steps(),
        seed in any::<u64>(),
    ) {
        for kind in SchedulerKind::ALL {
            let first = run(kind, candidates.clone(), &steps, seed)?;
            let second = run(kind, candidates.clone(), &steps, seed)?;
            prop_assert_eq!(first, second, "{}", kind);
        }
    }
}

#[test]
fn drained_and_ineligible_nodes_get_nothing_and_an_empty_pool_gets_none() {
    let mut candidates = weighted(&[2, 0, 1]);
    candidates[2].eligible = false;
    for kind in SchedulerKind::ALL {
        let mut scheduler = scheduler(kind);
        let mut rng = SeededRng::new(3);
        for request in 0..200u64 {
            let key = Some(super::hash::mix64(request));
            assert_eq!(
                scheduler.pick(&candidates, key, &mut rng),
                Some(1),
                "{kind}"
            );
        }
        candidates[0].eligible = false;
        assert_eq!(
            scheduler.pick(&candidates, Some(1), &mut rng),
            None,
            "{kind}"
        );
        assert_eq!(scheduler.pick(&[], Some(1), &mut rng), None, "{kind}");
        candidates[0].eligible = true;
    }
}

/// A closed loop: `concurrency` requests in flight; each pick adds one to the chosen node,
/// then one request finishes, drawn uniformly among those in flight (every request takes as
/// long wherever it runs). Keys are fresh for every request. Returns the picks per node and
/// the most requests each node ever had in flight.
fn closed_loop(
    scheduler: &mut dyn Scheduler,
    candidates: &mut [Candidate],
    concurrency: u32,
    picks: usize,
) -> (Vec<usize>, Vec<u32>) {
    let mut rng = SeededRng::new(11);
    let mut load_rng = SeededRng::new(12);
    let mut chosen = Vec::with_capacity(picks);
    let mut peak = vec![0; candidates.len()];
    for _ in 0..picks {
        let key = Some(rng.next_u64());
        let Some(node) = scheduler.pick(candidates, key, &mut rng) else {
            // Full (ovf): let one request finish and try again with the next.
            finish_one(candidates, &mut load_rng);
            continue;
        };
        chosen.push(node);
        for (index, candidate) in candidates.iter_mut().enumerate() {
            if candidate.node == node {
                candidate.active += 1;
                peak[index] = peak[index].max(candidate.active);
            }
        }
        if candidates
            .iter()
            .map(|candidate| candidate.active)
            .sum::<u32>()
            > concurrency
        {
            finish_one(candidates, &mut load_rng);
        }
    }
    (counts(candidates, &chosen), peak)
}

fn finish_one(candidates: &mut [Candidate], rng: &mut SeededRng) {
    let in_flight: u32 = candidates.iter().map(|candidate| candidate.active).sum();
    if in_flight == 0 {
        return;
    }
    let mut ticket = rng.below(u64::from(in_flight)) as u32;
    for candidate in candidates.iter_mut() {
        if ticket < candidate.active {
            candidate.active -= 1;
            return;
        }
        ticket -= candidate.active;
    }
}

fn shares(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&count| count as f64 / total as f64)
        .collect()
}

fn assert_shares(kind: SchedulerKind, counts: &[usize], expected: &[f64], tolerance: f64) {
    let shares = shares(counts);
    for (share, want) in shares.iter().zip(expected) {
        assert!(
            (share - want).abs() <= tolerance,
            "{kind}: shares {shares:.3?} (picks {counts:?}), want {expected:.3?} ± {tolerance}"
        );
    }
}

#[test]
fn every_scheduler_respects_weights_over_many_picks() {
    const PICKS: usize = 12_000;
    let proportional = [0.5, 1.0 / 3.0, 1.0 / 6.0];
    let equal = [1.0 / 3.0; 3];
    for kind in SchedulerKind::ALL {
        let mut candidates = weighted(&[3, 2, 1]);
        let mut scheduler = scheduler(kind);
        let (counts, peak) = closed_loop(scheduler.as_mut(), &mut candidates, 60, PICKS);
        match kind {
            SchedulerKind::Wrr => assert_eq!(counts, [6_000, 4_000, 2_000]),
            SchedulerKind::Rr => assert_eq!(counts, [4_000; 3]),
            SchedulerKind::Lc => assert_shares(kind, &counts, &equal, 0.02),
            SchedulerKind::Fo => assert_eq!(counts, [PICKS, 0, 0]),
            SchedulerKind::Ovf => {
                assert_eq!(peak, [3, 2, 1], "{kind}: in flight never past the weight");
                assert!(counts.iter().all(|&count| count > 0), "{kind}: {counts:?}");
            }
            SchedulerKind::Wlc
            | SchedulerKind::Sed
            | SchedulerKind::Nq
            | SchedulerKind::Lblc
            | SchedulerKind::Lblcr
            | SchedulerKind::Twos => assert_shares(kind, &counts, &proportional, 0.02),
            // Fresh keys over a static weighted table: shares are the table's, 1/256 grained.
            SchedulerKind::Dh | SchedulerKind::Sh | SchedulerKind::Mh => {
                assert_shares(kind, &counts, &proportional, 0.015)
            }
        }
    }
}
