//! Load scores shared by the least-connection family, as IPVS computes them.
//!
//! A node's *overhead* is 256 × active + inactive: an in-flight request costs far more than a
//! recently finished one, which only breaks ties. Weighted comparisons never divide: a/wa > b/wb
//! is tested as a × wb > b × wa, in `u128` so that no counter or weight can overflow it.

use super::Candidate;

/// IPVS's connection overhead: 256 × active + inactive.
pub(super) fn overhead(candidate: &Candidate) -> u64 {
    256 * u64::from(candidate.active) + u64::from(candidate.inactive)
}

/// Whether load `a` per weight `a_weight` exceeds load `b` per weight `b_weight`.
pub(super) fn heavier(a: u64, a_weight: u32, b: u64, b_weight: u32) -> bool {
    u128::from(a) * u128::from(b_weight) > u128::from(b) * u128::from(a_weight)
}

/// The available candidate with the lowest `score / weight`; the first one wins a tie, as in
/// IPVS (a later node replaces the best only when strictly lighter).
pub(super) fn lightest_by(
    candidates: &[Candidate],
    score: impl Fn(&Candidate) -> u64,
) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for (index, candidate) in candidates.iter().enumerate() {
        if !candidate.is_available() {
            continue;
        }
        let load = score(candidate);
        match best {
            Some((best_index, best_load))
                if !heavier(
                    best_load,
                    candidates[best_index].weight,
                    load,
                    candidate.weight,
                ) => {}
            _ => best = Some((index, load)),
        }
    }
    best.map(|(index, _)| index)
}

/// Weighted least connection over every available candidate (`wlc`, and the fallback of the
/// locality and hashing schedulers).
pub(super) fn weighted_least_connection(candidates: &[Candidate]) -> Option<usize> {
    lightest_by(candidates, overhead)
}

/// IPVS's test for abandoning a locality schedule: the node has more requests in flight than
/// its weight while some available node is under half of its own.
pub(super) fn is_overloaded(candidate: &Candidate, candidates: &[Candidate]) -> bool {
    u64::from(candidate.active) > u64::from(candidate.weight)
        && candidates.iter().any(|other| {
            other.is_available() && 2 * u64::from(other.active) < u64::from(other.weight)
        })
}

/// The greatest common divisor of the positive weights, or 1 when there are none: the step by
/// which `wrr` lowers its threshold and `mh` divides claims.
pub(super) fn weight_divisor(weights: impl Iterator<Item = u32>) -> u32 {
    let gcd = |mut a: u32, mut b: u32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    weights.filter(|&weight| weight > 0).fold(0, gcd).max(1)
}

/// Where `node` stands in `candidates`.
pub(super) fn position(
    candidates: &[Candidate],
    node: crate::raft::types::NodeId,
) -> Option<usize> {
    candidates
        .iter()
        .position(|candidate| candidate.node == node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_multiplication_does_not_overflow() {
        let busiest = Candidate {
            active: u32::MAX,
            inactive: u32::MAX,
            ..Candidate::new(1, u32::MAX)
        };
        assert_eq!(
            overhead(&busiest),
            256 * u64::from(u32::MAX) + u64::from(u32::MAX)
        );
        assert!(heavier(overhead(&busiest), 1, 0, u32::MAX));
        assert!(!heavier(0, u32::MAX, overhead(&busiest), 1));
    }

    #[test]
    fn overloaded_needs_a_half_idle_alternative() {
        let busy = Candidate {
            active: 3,
            ..Candidate::new(1, 2)
        };
        let half_busy = Candidate {
            active: 2,
            ..Candidate::new(2, 4)
        };
        let idle = Candidate::new(3, 4);
        assert!(!is_overloaded(&busy, &[busy, half_busy]));
        assert!(is_overloaded(&busy, &[busy, half_busy, idle]));
    }
}
