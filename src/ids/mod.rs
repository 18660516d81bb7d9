//! Snowflake IDs: cluster-unique, roughly time-ordered 64-bit integers that any node issues on
//! its own, with no coordination per ID.
//!
//! An ID is `timestamp | datacenter | worker | sequence` ([`layout`]). Uniqueness across the
//! cluster comes from membership: the worker id *is* the node id ([`worker_for_node`]), node ids
//! are unique and never reused, and the datacenter id is configured per node; both travel in the
//! node's membership record ([`crate::raft::types::IdWorker`]) and the membership refuses a node
//! whose pair another member already uses. Uniqueness on one node comes from [`Generator`]:
//!
//! - **Strictly increasing.** The generator remembers the next free `(tick, sequence)`; each ID
//!   takes it. A new tick starts at sequence 0; when the sequence of a tick is used up, the
//!   generator waits for the clock to reach the next tick.
//! - **Clock moving back.** Up to `max_clock_rollback_ms` behind the last tick used, the
//!   generator keeps issuing from that tick while its sequence lasts, then waits for the clock to
//!   pass it. Further back, it refuses ([`IdError::ClockMovedBack`]) and counts the refusal.
//! - **Restarts.** Before issuing an ID in a tick, the generator makes sure a *lease* covering
//!   that tick is on disk ([`HighWaterMark`], [`high_water::FileHighWaterMark`]): a Unix time
//!   that no ID issued so far reaches. It renews the lease [`LEASE_MS`] ahead when the clock gets
//!   within half of that of its end, so a busy node writes once a second, not once per ID. A
//!   restarted node starts from the lease's end, so whatever its clock says it never reissues
//!   an ID: up to [`LEASE_MS`] + the rollback bound behind the lease it issues from the lease's
//!   first tick (then waits), further back it refuses. A clean stop ([`Generator::close`])
//!   shortens the lease to the last tick used, so a prompt restart issues at once.
//!
//! Everything here is pure logic over an injected [`Clock`] and [`HighWaterMark`]; the node
//! plugs in the system clock and a file in its data directory ([`NodeGenerator`]). The SQL
//! functions live in [`sql`], the `phalanx id` commands in [`cli`].
//!
//! Concurrency: one `std::sync::Mutex` around the state, held for a clock read and a few integer
//! operations per ID (and, about once a second, the lease write), never across an `.await` or a
//! wait for the clock.

pub mod cli;
pub mod high_water;
pub mod layout;
pub mod sql;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use layout::{IdParts, Layout, LayoutError};

use crate::raft::types::NodeId;

/// How far ahead of the last tick used the persisted lease reaches; renewed when the clock is
/// within half of it of the end.
pub const LEASE_MS: u64 = 2_000;

/// The worker id of a node: its node id, which the membership keeps unique. It must fit the
/// layout's worker bits (checked at start-up).
pub fn worker_for_node(node: NodeId) -> u64 {
    node
}

/// Wall-clock time, injected so the generator can be tested with a fake one.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (may move backwards).
    fn now_unix_ms(&self) -> u64;
    /// Returns once `now_unix_ms() >= unix_ms`, or earlier if the clock jumped (callers re-read).
    /// `precise`: return as close to that instant as possible (at some CPU cost); otherwise a
    /// plain sleep, which may overshoot a little.
    fn wait_until_unix_ms(&self, unix_ms: u64, precise: bool);
}

/// Durable storage of the lease: the Unix millisecond no issued ID's tick reaches.
pub trait HighWaterMark: Send + Sync {
    /// The stored lease end; `None` if nothing was ever stored.
    fn load(&self) -> Result<Option<u64>, IdError>;
    /// Stores `unix_ms` durably before returning.
    fn store(&self, unix_ms: u64) -> Result<(), IdError>;
}

/// Why no ID was issued.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// The clock reads further behind the last tick used (or, after a restart, behind the
    /// persisted lease) than the generator tolerates. Retry once the clock has caught up.
    #[error(
        "the clock is {behind_ms} ms behind the last ID timestamp, more than the {tolerated_ms} ms tolerated: no IDs until it catches up"
    )]
    ClockMovedBack { behind_ms: u64, tolerated_ms: u64 },
    /// The clock reads before the layout's epoch.
    #[error("the clock reads before the ID epoch")]
    BeforeEpoch,
    /// The layout's timestamp field is used up: the layout has reached its end.
    #[error("the ID layout's timestamp field is exhausted")]
    TimestampExhausted,
    /// The lease could not be stored: no ID may be issued past the stored one.
    #[error("cannot persist the ID high-water mark {path}: {source}")]
    Persist {
        path: String,
        source: std::io::Error,
    },
    /// The stored lease cannot be read: refusing to guess where IDs may restart.
    #[error(
        "the ID high-water mark {path} is unreadable ({detail}); restore or remove it only if this node's clock is known to be past every ID it issued"
    )]
    Corrupt { path: String, detail: String },
    /// The generator was closed (the node is stopping).
    #[error("the ID generator is closed: the node is stopping")]
    Closed,
}

/// Who this generator issues IDs as, and how strict it is about clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorSettings {
    pub layout: Layout,
    pub datacenter: u64,
    pub worker: u64,
    /// How far the clock may move back before the generator refuses.
    pub max_clock_rollback_ms: u64,
}

/// Counters for `/v1/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneratorStats {
    pub issued: u64,
    pub clock_rollback_refusals: u64,
    pub lease_writes: u64,
}

/// The next free `(tick, sequence)` and what the lease covers.
#[derive(Debug, Clone, Copy)]
struct State {
    next_tick: u64,
    next_sequence: u64,
    /// The first tick of this incarnation (from the stored lease): while the generator is
    /// still there, the clock may be behind by up to a lease (a restart after a crash).
    floor_tick: u64,
    /// Unix ms the stored lease reaches: every issued ID's tick starts before it.
    lease_end_unix_ms: u64,
    issued: u64,
    lease_writes: u64,
    closed: bool,
}

/// What to do for one ID, decided from the state and one clock reading.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Issue { tick: u64, sequence: u64 },
    WaitForTick(u64),
    Refuse { behind_ms: u64, tolerated_ms: u64 },
}

/// A Snowflake generator for one worker. Cheap to share behind an `Arc`.
pub struct Generator<C, H> {
    settings: GeneratorSettings,
    clock: C,
    high_water: H,
    state: Mutex<State>,
    clock_rollback_refusals: AtomicU64,
    /// Some thread is waiting precisely for the next tick.
    precise_waiter: AtomicBool,
}

impl<C, H> std::fmt::Debug for Generator<C, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The generator a node runs: the system clock and a lease file in its data directory.
pub type NodeGenerator = Generator<SystemClock, high_water::FileHighWaterMark>;

impl<C: Clock, H: HighWaterMark> Generator<C, H> {
    /// A generator that resumes after whatever `high_water` holds. The datacenter and worker
    /// must fit the layout (the configuration checks this first).
    pub fn new(settings: GeneratorSettings, clock: C, high_water: H) -> Result<Self, IdError> {
        assert!(settings.datacenter <= settings.layout.max_datacenter());
        assert!(settings.worker <= settings.layout.max_worker());
        let lease_end = high_water.load()?.unwrap_or(0);
        let floor_tick = settings.layout.first_tick_from(lease_end);
        Ok(Generator {
            settings,
            clock,
            high_water,
            state: Mutex::new(State {
                next_tick: floor_tick,
                next_sequence: 0,
                floor_tick,
                lease_end_unix_ms: lease_end,
                issued: 0,
                lease_writes: 0,
                closed: false,
            }),
            clock_rollback_refusals: AtomicU64::new(0),
            precise_waiter: AtomicBool::new(false),
        })
    }

    pub fn settings(&self) -> &GeneratorSettings {
        &self.settings
    }

    /// Issues one ID, waiting for the next tick when the current one is used up.
    pub fn next_id(&self) -> Result<u64, IdError> {
        self.issue_run(1).map(|(first, _)| first)
    }

    /// Appends `count` IDs to `out`, in increasing order.
    pub fn next_ids(&self, count: usize, out: &mut Vec<u64>) -> Result<(), IdError> {
        out.reserve(count);
        let mut left = count as u64;
        while left > 0 {
            let (first, issued) = self.issue_run(left)?;
            out.extend(first..first + issued);
            left -= issued;
        }
        Ok(())
    }

    /// Issues between 1 and `wanted` IDs of one tick: consecutive integers (the sequence is the
    /// lowest field), returned as the first and the count. Waits for the next tick when the
    /// current one is used up.
    fn issue_run(&self, wanted: u64) -> Result<(u64, u64), IdError> {
        debug_assert!(wanted >= 1);
        loop {
            let wait_for = {
                let mut state = self.state.lock().map_err(|_| IdError::Closed)?;
                if state.closed {
                    return Err(IdError::Closed);
                }
                let now = self.clock.now_unix_ms();
                match self.step(&state, now)? {
                    Step::Issue { tick, sequence } => {
                        self.cover_with_lease(&mut state, tick, now)?;
                        let count = wanted.min(self.settings.layout.max_sequence() - sequence + 1);
                        state.next_tick = tick;
                        state.next_sequence = sequence + count;
                        state.issued += count;
                        let first = self.settings.layout.encode(IdParts {
                            tick,
                            datacenter: self.settings.datacenter,
                            worker: self.settings.worker,
                            sequence,
                        });
                        return Ok((first, count));
                    }
                    Step::WaitForTick(tick) => self.settings.layout.tick_start_unix_ms(tick),
                    Step::Refuse {
                        behind_ms,
                        tolerated_ms,
                    } => {
                        self.clock_rollback_refusals.fetch_add(1, Ordering::Relaxed);
                        return Err(IdError::ClockMovedBack {
                            behind_ms,
                            tolerated_ms,
                        });
                    }
                }
            };
            // The lock is released while waiting. One waiter at a time waits precisely, so the
            // next tick starts on time; the others sleep, and find its sequence in use when
            // they wake, rather than burn the CPU the node's other threads need.
            let precise = !self.precise_waiter.swap(true, Ordering::Acquire);
            self.clock.wait_until_unix_ms(wait_for, precise);
            if precise {
                self.precise_waiter.store(false, Ordering::Release);
            }
        }
    }

    /// The pure decision for one ID at clock reading `now`.
    fn step(&self, state: &State, now: u64) -> Result<Step, IdError> {
        let layout = &self.settings.layout;
        let now_tick = layout.tick_of(now).ok_or(IdError::BeforeEpoch)?;
        let sequence_left = state.next_sequence <= layout.max_sequence();
        let step = if now_tick > state.next_tick {
            Step::Issue {
                tick: now_tick,
                sequence: 0,
            }
        } else if now_tick == state.next_tick && sequence_left {
            Step::Issue {
                tick: now_tick,
                sequence: state.next_sequence,
            }
        } else if now_tick == state.next_tick {
            Step::WaitForTick(now_tick + 1)
        } else {
            // The clock is behind the tick in use: by at least this much.
            let behind_ms = layout.tick_start_unix_ms(state.next_tick) - now;
            let tolerated_ms = if state.next_tick <= state.floor_tick {
                LEASE_MS + self.settings.max_clock_rollback_ms
            } else {
                self.settings.max_clock_rollback_ms
            };
            if behind_ms > tolerated_ms {
                Step::Refuse {
                    behind_ms,
                    tolerated_ms,
                }
            } else if sequence_left {
                Step::Issue {
                    tick: state.next_tick,
                    sequence: state.next_sequence,
                }
            } else {
                Step::WaitForTick(state.next_tick + 1)
            }
        };
        match step {
            Step::Issue { tick, .. } if tick > layout.max_tick() => {
                Err(IdError::TimestampExhausted)
            }
            step => Ok(step),
        }
    }

    /// Makes sure the stored lease covers `tick`, renewing it [`LEASE_MS`] ahead when `tick`
    /// is within half a lease of its end. Nothing is issued unless the lease is stored.
    fn cover_with_lease(&self, state: &mut State, tick: u64, now: u64) -> Result<(), IdError> {
        let tick_start = self.settings.layout.tick_start_unix_ms(tick);
        if tick_start.saturating_add(LEASE_MS / 2) < state.lease_end_unix_ms {
            return Ok(());
        }
        let lease_end = tick_start.max(now).saturating_add(LEASE_MS);
        self.high_water.store(lease_end)?;
        state.lease_end_unix_ms = lease_end;
        state.lease_writes += 1;
        Ok(())
    }

    /// Stops issuing and shortens the stored lease to the end of the last tick used, so that
    /// a prompt restart need not wait for the clock to pass the lease.
    pub fn close(&self) -> Result<(), IdError> {
        let mut state = self.state.lock().map_err(|_| IdError::Closed)?;
        if state.closed {
            return Ok(());
        }
        state.closed = true;
        let first_free_tick = if state.next_sequence == 0 {
            state.next_tick
        } else {
            state.next_tick + 1
        };
        let resume_at = self.settings.layout.tick_start_unix_ms(first_free_tick);
        if resume_at < state.lease_end_unix_ms {
            self.high_water.store(resume_at)?;
            state.lease_end_unix_ms = resume_at;
        }
        Ok(())
    }

    pub fn stats(&self) -> GeneratorStats {
        let (issued, lease_writes) = self
            .state
            .lock()
            .map(|s| (s.issued, s.lease_writes))
            .unwrap_or_default();
        GeneratorStats {
            issued,
            clock_rollback_refusals: self.clock_rollback_refusals.load(Ordering::Relaxed),
            lease_writes,
        }
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// A precise wait of [`SystemClock`] sleeps until this long before the instant it waits for,
/// then yields in a loop: a sleep overshoots by tens of microseconds (timer slack), and on a
/// busy machine the woken thread waits for a core, which at 4,096 IDs per millisecond costs
/// 10-15% of the limit. So the one precise waiter yields through a sub-millisecond wait (its
/// core stays available to any other runnable thread); the other waiters sleep.
const SLEEP_MARGIN: Duration = Duration::from_micros(1_000);

impl SystemClock {
    fn since_unix_epoch() -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        Self::since_unix_epoch().as_millis() as u64
    }

    fn wait_until_unix_ms(&self, unix_ms: u64, precise: bool) {
        let start = self.now_unix_ms();
        let margin = if precise {
            SLEEP_MARGIN
        } else {
            Duration::ZERO
        };
        let target = Duration::from_millis(unix_ms);
        loop {
            let now = Self::since_unix_epoch();
            let now_ms = now.as_millis() as u64;
            // Reached, or the clock jumped back: the generator decides again either way.
            if now_ms >= unix_ms || now_ms < start {
                return;
            }
            let left = target.saturating_sub(now);
            if left > 2 * margin {
                std::thread::sleep(left - margin);
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests;
