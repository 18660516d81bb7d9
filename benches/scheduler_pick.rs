//! The cost of one scheduler pick, for every algorithm, with 3 and 8 candidates.
//!
//! Run with `bench/scheduler.sh` (or `cargo bench --bench scheduler_pick`). The candidates have
//! mixed weights and loads; keyed schedulers see 1,024 distinct keys in turn, so the locality
//! schedulers measure the common case (a remembered key) and the hashing ones a table lookup.
//! Tables are built before timing starts: a rebuild happens only when the candidates change,
//! and `pick_after_a_weight_change` measures that case apart.

use divan::{Bencher, black_box};
use phalanx::dispatch::scheduler::{
    Candidate, SchedulerKind, SchedulerParams, SeededRng, hash_key, new_scheduler,
};

fn main() {
    divan::main();
}

const KEYS: usize = 1_024;

fn candidates(count: usize) -> Vec<Candidate> {
    (0..count as u64)
        .map(|node| Candidate {
            node: node + 1,
            weight: [5, 3, 2, 4, 1, 6, 2, 3][node as usize % 8],
            active: [2, 1, 0, 3, 0, 4, 1, 2][node as usize % 8],
            inactive: [9, 4, 0, 12, 1, 7, 3, 5][node as usize % 8],
            eligible: node != 2,
        })
        .collect()
}

#[divan::bench(args = SchedulerKind::ALL, consts = [3, 8])]
fn pick<const NODES: usize>(bencher: Bencher, kind: SchedulerKind) {
    let candidates = candidates(NODES);
    let keys: Vec<u64> = (0..KEYS)
        .map(|n| hash_key(format!("table_{n}").as_bytes()))
        .collect();
    let mut scheduler =
        new_scheduler(kind, &SchedulerParams::default()).expect("default settings are valid");
    let mut rng = SeededRng::new(1);
    for &key in &keys {
        scheduler.pick(&candidates, Some(key), &mut rng);
    }
    let mut next = 0;
    bencher.bench_local(|| {
        next = (next + 1) % KEYS;
        scheduler.pick(black_box(&candidates), Some(keys[next]), &mut rng)
    });
}

/// A pick when the candidates' weights changed since the last one, so the scheduler rebuilds
/// its table first (`wrr`'s divisor, `sh`'s 256 buckets, `mh`'s 4093 Maglev slots): what a
/// weight change or membership change costs once.
#[divan::bench(args = [SchedulerKind::Wrr, SchedulerKind::Sh, SchedulerKind::Mh], consts = [3, 8])]
fn pick_after_a_weight_change<const NODES: usize>(bencher: Bencher, kind: SchedulerKind) {
    let mut sets = [candidates(NODES), candidates(NODES)];
    sets[1][0].weight += 1;
    let mut scheduler =
        new_scheduler(kind, &SchedulerParams::default()).expect("default settings are valid");
    let mut rng = SeededRng::new(1);
    let mut next = 0;
    bencher.bench_local(|| {
        next += 1;
        scheduler.pick(black_box(&sets[next % 2]), Some(next as u64), &mut rng)
    });
}
