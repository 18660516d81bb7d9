//! The generator against a fake clock and an in-memory lease: properties over random clock
//! histories, and the exact corner cases (exhaustion, rollback, restart).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;

/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000;
const BOUND_MS: u64 = 10;
const DATACENTER: u64 = 3;
const WORKER: u64 = 21;

/// A clock the test moves; waiting jumps it to the target and records the target.
#[derive(Clone, Default)]
struct FakeClock(Arc<FakeClockState>);

#[derive(Default)]
struct FakeClockState {
    now: AtomicU64,
    waits: Mutex<Vec<u64>>,
}

impl FakeClock {
    fn at(unix_ms: u64) -> FakeClock {
        let clock = FakeClock::default();
        clock.set(unix_ms);
        clock
    }
    fn set(&self, unix_ms: u64) {
        self.0.now.store(unix_ms, Ordering::SeqCst);
    }
    fn now(&self) -> u64 {
        self.0.now.load(Ordering::SeqCst)
    }
    fn take_waits(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.waits.lock().expect("waits"))
    }
}

impl Clock for FakeClock {
    fn now_unix_ms(&self) -> u64 {
        self.now()
    }
    fn wait_until_unix_ms(&self, unix_ms: u64, _precise: bool) {
        self.0.waits.lock().expect("waits").push(unix_ms);
        self.0.now.fetch_max(unix_ms, Ordering::SeqCst);
    }
}

/// A lease store in memory, shared between "incarnations"; can be made to fail.
#[derive(Clone, Default)]
struct MemoryMark {
    value: Arc<Mutex<Option<u64>>>,
    failing: Arc<AtomicBool>,
}

impl HighWaterMark for MemoryMark {
    fn load(&self) -> Result<Option<u64>, IdError> {
        Ok(*self.value.lock().expect("mark"))
    }
    fn store(&self, unix_ms: u64) -> Result<(), IdError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(IdError::Persist {
                path: "memory".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        *self.value.lock().expect("mark") = Some(unix_ms);
        Ok(())
    }
}

/// 4 sequence bits (16 IDs a tick) so that exhaustion happens often in short histories.
fn small_layout(tick_ms: u64) -> Layout {
    Layout::new("2024-01-01T00:00:00Z", tick_ms, [41, 5, 13, 4], START).expect("layout")
}

fn generator(
    layout: Layout,
    clock: &FakeClock,
    mark: &MemoryMark,
) -> Generator<FakeClock, MemoryMark> {
    let settings = GeneratorSettings {
        layout,
        datacenter: DATACENTER,
        worker: WORKER,
        max_clock_rollback_ms: BOUND_MS,
    };
    Generator::new(settings, clock.clone(), mark.clone()).expect("generator")
}

fn parts(layout: &Layout, id: u64) -> IdParts {
    layout.decode(id).expect("decodes")
}

/// A generator with 1 ms ticks that has issued one ID at `unix_ms`.
fn after_one_id_at(unix_ms: u64) -> (Layout, FakeClock, Generator<FakeClock, MemoryMark>, u64) {
    let layout = small_layout(1);
    let clock = FakeClock::at(unix_ms);
    let ids = generator(layout, &clock, &MemoryMark::default());
    let first = ids.next_id().expect("id");
    (layout, clock, ids, first)
}

#[test]
fn exhaustion_waits_exactly_for_the_next_tick() {
    for tick_ms in [1, 10] {
        let layout = small_layout(tick_ms);
        // Mid-tick, so that waiting "to the next tick" is distinguishable from waiting a tick.
        let clock = FakeClock::at(START + tick_ms / 2);
        let ids = generator(layout, &clock, &MemoryMark::default());
        let tick = layout.tick_of(clock.now()).expect("after epoch");
        for sequence in 0..=layout.max_sequence() {
            let id = ids.next_id().expect("id");
            let expected = IdParts {
                tick,
                datacenter: DATACENTER,
                worker: WORKER,
                sequence,
            };
            assert_eq!(parts(&layout, id), expected);
        }
        assert!(clock.take_waits().is_empty(), "no wait within a tick");
        let id = ids.next_id().expect("id after the wait");
        assert_eq!(
            clock.take_waits(),
            vec![layout.tick_start_unix_ms(tick + 1)]
        );
        assert_eq!(
            (parts(&layout, id).tick, parts(&layout, id).sequence),
            (tick + 1, 0)
        );
    }
}

#[test]
fn a_batch_takes_whole_ticks_and_waits_exactly_between_them() {
    let layout = small_layout(1);
    let clock = FakeClock::at(START);
    let ids = generator(layout, &clock, &MemoryMark::default());
    let mut batch = Vec::new();
    ids.next_ids(40, &mut batch).expect("40 IDs");
    assert_eq!(clock.take_waits(), vec![START + 1, START + 2]);
    let tick = layout.tick_of(START).expect("tick");
    let expected: Vec<(u64, u64)> = (0..40).map(|n| (tick + n / 16, n % 16)).collect();
    let got: Vec<(u64, u64)> = batch
        .iter()
        .map(|&id| (parts(&layout, id).tick, parts(&layout, id).sequence))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(ids.stats().issued, 40);
}

#[test]
fn a_rollback_within_the_bound_issues_from_the_last_tick_then_waits() {
    let (layout, clock, ids, first) = after_one_id_at(START + 100);
    clock.set(START + 100 - BOUND_MS);
    let mut last = first;
    for sequence in 1..=layout.max_sequence() {
        let id = ids.next_id().expect("within the bound");
        assert!(id > last);
        assert_eq!(parts(&layout, id).sequence, sequence);
        assert_eq!(parts(&layout, id).tick, parts(&layout, first).tick);
        last = id;
    }
    assert!(clock.take_waits().is_empty());
    let id = ids.next_id().expect("after waiting");
    assert_eq!(clock.take_waits(), vec![START + 101]);
    assert!(id > last);
    assert_eq!(ids.stats().clock_rollback_refusals, 0);
}

#[test]
fn a_rollback_beyond_the_bound_is_refused_and_counted() {
    let (_, clock, ids, first) = after_one_id_at(START + 100);
    clock.set(START + 100 - BOUND_MS - 1);
    match ids.next_id() {
        Err(IdError::ClockMovedBack {
            behind_ms,
            tolerated_ms,
        }) => assert_eq!((behind_ms, tolerated_ms), (BOUND_MS + 1, BOUND_MS)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(ids.next_id().is_err());
    assert_eq!(ids.stats().clock_rollback_refusals, 2);
    clock.set(START + 100);
    assert!(ids.next_id().expect("caught up") > first);
    assert_eq!(ids.stats().issued, 2);
}

#[test]
fn no_id_is_issued_unless_the_lease_is_stored() {
    let layout = small_layout(1);
    let clock = FakeClock::at(START);
    let mark = MemoryMark::default();
    mark.failing.store(true, Ordering::SeqCst);
    let ids = generator(layout, &clock, &mark);
    assert!(matches!(ids.next_id(), Err(IdError::Persist { .. })));
    assert_eq!(ids.stats().issued, 0);
    mark.failing.store(false, Ordering::SeqCst);
    ids.next_id().expect("id once the disk works");
    assert_eq!(*mark.value.lock().expect("mark"), Some(START + LEASE_MS));
}

#[test]
fn the_lease_is_written_about_once_a_second_not_per_id() {
    let layout = small_layout(1);
    let clock = FakeClock::at(START);
    let mark = MemoryMark::default();
    let ids = generator(layout, &clock, &mark);
    // 10 s of IDs at 16 per millisecond: the clock moves only by waiting.
    for _ in 0..16 * 10_000 {
        ids.next_id().expect("id");
    }
    let elapsed = clock.now() - START;
    assert!(elapsed >= 9_999, "{elapsed}");
    let writes = ids.stats().lease_writes;
    assert!(
        writes <= elapsed / (LEASE_MS / 2) + 1,
        "{writes} lease writes"
    );
    let stored = mark.value.lock().expect("mark").expect("stored");
    assert!(stored > clock.now() && stored <= clock.now() + LEASE_MS);
}

#[test]
fn before_the_epoch_is_an_error_and_closing_stops_issuing() {
    let layout = small_layout(1);
    let clock = FakeClock::at(layout.epoch_unix_ms() - 1);
    let ids = generator(layout, &clock, &MemoryMark::default());
    assert!(matches!(ids.next_id(), Err(IdError::BeforeEpoch)));
    clock.set(START);
    ids.next_id().expect("id");
    ids.close().expect("close");
    assert!(matches!(ids.next_id(), Err(IdError::Closed)));
}

#[test]
fn a_restart_after_a_crash_with_the_clock_set_back_an_hour_refuses() {
    let layout = small_layout(1);
    let clock = FakeClock::at(START);
    let mark = MemoryMark::default();
    let before = generator(layout, &clock, &mark).next_id().expect("id");
    clock.set(START - 3_600_000);
    let after = generator(layout, &clock, &mark);
    assert!(matches!(
        after.next_id(),
        Err(IdError::ClockMovedBack { .. })
    ));
    // Within the lease (the clock did not move; the node just restarted): issues at once,
    // from the lease's end.
    clock.set(START);
    let id = after.next_id().expect("within the lease");
    assert!(id > before);
    assert_eq!(
        parts(&layout, id).tick,
        layout.tick_of(START + LEASE_MS).expect("tick")
    );
}

#[test]
fn a_restart_after_a_clean_stop_resumes_right_after_the_last_tick() {
    let layout = small_layout(1);
    let clock = FakeClock::at(START);
    let mark = MemoryMark::default();
    let first = generator(layout, &clock, &mark);
    let before = first.next_id().expect("id");
    first.close().expect("close");
    assert_eq!(*mark.value.lock().expect("mark"), Some(START + 1));
    clock.set(START + 1);
    let id = generator(layout, &clock, &mark).next_id().expect("id");
    assert!(id > before);
    assert_eq!(
        parts(&layout, id).tick,
        layout.tick_of(START + 1).expect("tick")
    );
}

/// One step of a clock history: move the clock by `delta_ms`, then ask for `count` IDs, one
/// call each or (`batch`) in one `next_ids` call.
#[derive(Debug, Clone)]
struct Move {
    delta_ms: i64,
    count: usize,
    batch: bool,
}

fn histories() -> impl Strategy<Value = Vec<Move>> {
    let delta = prop_oneof![
        4 => 0i64..=3,
        2 => 4i64..=3_000,
        2 => -(BOUND_MS as i64)..0,
        1 => -(3 * BOUND_MS as i64)..-(BOUND_MS as i64),
    ];
    prop::collection::vec(
        (delta, 1usize..=40, any::<bool>()).prop_map(|(delta_ms, count, batch)| Move {
            delta_ms,
            count,
            batch,
        }),
        1..40,
    )
}

/// Runs `history` on `ids`, checking every answer; returns the issued IDs. IDs must exceed
/// `last`; with `fresh`, a refusal must be justified by this history's own clock readings
/// (after a restart the stored lease can justify it too).
fn run_history(
    ids: &Generator<FakeClock, MemoryMark>,
    clock: &FakeClock,
    history: &[Move],
    mut last: Option<u64>,
    fresh: bool,
) -> Result<Vec<u64>, TestCaseError> {
    let layout = ids.settings().layout;
    let mut issued = Vec::new();
    let mut max_seen = clock.now();
    for step in history {
        clock.set(clock.now().saturating_add_signed(step.delta_ms));
        let calls = if step.batch { 1 } else { step.count };
        for _ in 0..calls {
            let now = clock.now();
            let mut answer = Vec::new();
            let result = if step.batch {
                ids.next_ids(step.count, &mut answer)
            } else {
                ids.next_id().map(|id| answer.push(id))
            };
            for id in answer {
                prop_assert!(last.is_none_or(|l| id > l), "{id} after {last:?}");
                let p = parts(&layout, id);
                prop_assert_eq!((p.datacenter, p.worker), (DATACENTER, WORKER));
                last = Some(id);
                issued.push(id);
            }
            match result {
                Ok(()) => {}
                Err(IdError::ClockMovedBack { behind_ms, .. }) => {
                    prop_assert!(behind_ms > BOUND_MS);
                    prop_assert!(
                        !fresh || max_seen - now > BOUND_MS,
                        "refused though the clock is only {} ms behind its maximum",
                        max_seen - now
                    );
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
            max_seen = max_seen.max(clock.now());
        }
    }
    Ok(issued)
}

proptest! {
    /// Whatever the clock does, IDs strictly increase; a rollback within the bound of the
    /// highest reading never causes a refusal, and a refusal only happens beyond the bound.
    #[test]
    fn ids_strictly_increase_under_any_clock(tick_ms in 1u64..=10, history in histories()) {
        let clock = FakeClock::at(START);
        let ids = generator(small_layout(tick_ms), &clock, &MemoryMark::default());
        let issued = run_history(&ids, &clock, &history, None, true)?;
        prop_assert_eq!(ids.stats().issued, issued.len() as u64);
    }

    /// A node restarted (after a crash or a clean stop) with its clock set back by any amount
    /// never issues an ID it issued before: every new ID exceeds every old one.
    #[test]
    fn a_restart_with_the_clock_set_back_never_repeats(
        tick_ms in 1u64..=10,
        before in histories(),
        after in histories(),
        set_back_ms in 0u64..=5_000,
        clean_stop in any::<bool>(),
    ) {
        let layout = small_layout(tick_ms);
        let clock = FakeClock::at(START);
        let mark = MemoryMark::default();
        let first = generator(layout, &clock, &mark);
        let old = run_history(&first, &clock, &before, None, true)?;
        if clean_stop {
            first.close().expect("close");
        }
        drop(first);
        clock.set(clock.now() - set_back_ms);
        let second = generator(layout, &clock, &mark);
        let new = run_history(&second, &clock, &after, old.last().copied(), false)?;
        if let (Some(old_max), Some(new_min)) = (old.iter().max(), new.iter().min()) {
            prop_assert!(new_min > old_max);
        }
    }
}
