//! [`SeededRng`]: the only randomness a scheduler sees, passed in by the caller.
//!
//! SplitMix64 (Steele, Lea and Flood, 2014): one `u64` of state, a few multiplications per
//! value, and the same sequence for a seed on every platform and in every release, which a
//! general-purpose crate RNG does not promise. Not for cryptography.

use super::hash::mix64;

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A small deterministic random number generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A value in `0..bound` (`bound` > 0), by the multiply-shift method: the bias is at most
    /// `bound / 2^64`, far below anything a load balancer could notice.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_sequence() {
        let mut a = SeededRng::new(42);
        let mut b = SeededRng::new(42);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(SeededRng::new(43).next_u64(), first[0]);
        // SplitMix64's published first output for seed 0.
        assert_eq!(SeededRng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SeededRng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..5_000 {
            let value = rng.below(5);
            assert!(value < 5);
            seen[value as usize] += 1;
        }
        assert!(
            seen.iter().all(|&count| (900..1_100).contains(&count)),
            "{seen:?}"
        );
    }
}
