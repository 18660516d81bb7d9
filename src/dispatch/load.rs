//! What a node reports about its own load with every health probe answer — reads it is
//! serving, CPU used since the last report, p99 latency of its recent reads — and how the
//! dispatcher turns that into effective weights when `dynamic_weights` is on.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::raft::types::LogIndex;

/// Reads whose latency the p99 is taken over.
const LATENCY_WINDOW: usize = 256;

/// A health probe's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub applied: LogIndex,
    pub load: LoadReport,
    /// The node leads and a quorum acknowledged it within the leader lease when it answered:
    /// its applied index is then everything the cluster has acknowledged (the reference point
    /// of `bounded` reads, [`crate::dispatch::staleness`]).
    pub leading: bool,
}

/// A node's load as it measures it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Reads being served right now.
    pub in_flight: u32,
    /// CPU used by the node process since its previous report, in percent of one core.
    pub cpu_percent: f32,
    /// p99 latency of its last reads, in microseconds (0 when none).
    pub p99_us: u64,
}

/// Effective weight under dynamic weights: the configured weight scaled down by the reported
/// load. Each read in flight, each 10% of a core and each millisecond of p99 cost the same
/// share: the node keeps `1 / (1 + penalty / 10)` of its weight, in whole tenths (at least
/// one), so small swings in load do not change the weight — hashing schedulers rebuild their
/// tables when a weight changes. Drained (0) stays 0; a node with no report yet counts as idle.
///
/// For most schedulers weights are ratios, so the result is in hundredths of the configured
/// weight (an idle weight-3 node weighs 300) to keep the ratios through rounding. For those
/// that read a weight as a capacity in requests (`capacity`: ovf, lblc, lblcr) it stays in the
/// configured unit, rounded, at least 1.
pub fn dynamic_weight(configured: u32, load: Option<&LoadReport>, capacity: bool) -> u32 {
    if configured == 0 {
        return 0;
    }
    let penalty = load.map_or(0.0, |load| {
        f64::from(load.in_flight)
            + f64::from(load.cpu_percent.max(0.0)) / 10.0
            + load.p99_us as f64 / 1000.0
    });
    let tenths = (10.0 / (1.0 + penalty / 10.0)).round().clamp(1.0, 10.0) as u32;
    if capacity {
        // Saturating: weights come from users, up to u32::MAX.
        (configured.saturating_mul(tenths).saturating_add(5) / 10).max(1)
    } else {
        configured.saturating_mul(10 * tenths)
    }
}

/// This node's own load, measured by the read path.
pub struct LocalLoad {
    in_flight: AtomicU32,
    latencies: Mutex<VecDeque<u64>>,
    /// CPU ticks and the instant of the previous report.
    last_cpu: Mutex<Option<(u64, Instant)>>,
}

impl Default for LocalLoad {
    fn default() -> Self {
        LocalLoad {
            in_flight: AtomicU32::new(0),
            latencies: Mutex::new(VecDeque::with_capacity(LATENCY_WINDOW)),
            last_cpu: Mutex::new(None),
        }
    }
}

impl LocalLoad {
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self, latency: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut latencies = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if latencies.len() == LATENCY_WINDOW {
            latencies.pop_front();
        }
        latencies.push_back(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// The report for a probe.
    pub fn report(&self) -> LoadReport {
        let p99_us = {
            let latencies = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
            let mut sorted: Vec<u64> = latencies.iter().copied().collect();
            sorted.sort_unstable();
            sorted
                .get((sorted.len().saturating_sub(1)) * 99 / 100)
                .copied()
                .unwrap_or(0)
        };
        LoadReport {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            cpu_percent: self.cpu_percent(),
            p99_us,
        }
    }

    /// CPU used since the previous call, from /proc/self/stat (0 where unavailable).
    fn cpu_percent(&self) -> f32 {
        let Some(ticks) = process_cpu_ticks() else {
            return 0.0;
        };
        let now = Instant::now();
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let percent = match *last {
            Some((before, at)) if now > at => {
                let seconds = now.duration_since(at).as_secs_f64();
                // Linux's USER_HZ is 100 on every architecture it runs on here.
                (ticks.saturating_sub(before) as f64 / 100.0 / seconds * 100.0) as f32
            }
            _ => 0.0,
        };
        *last = Some((ticks, now));
        percent
    }
}

/// utime + stime of this process, in clock ticks.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3 of the file, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_scales_weights_down_and_drained_stays_drained() {
        let idle = LoadReport::default();
        assert_eq!(dynamic_weight(3, Some(&idle), false), 300);
        assert_eq!(dynamic_weight(3, None, false), 300, "no report yet: idle");
        assert_eq!(dynamic_weight(0, Some(&idle), false), 0);
        let busy = LoadReport {
            in_flight: 10,
            cpu_percent: 0.0,
            p99_us: 0,
        };
        assert_eq!(
            dynamic_weight(3, Some(&busy), false),
            150,
            "10 in flight halve the weight"
        );
        let slow = LoadReport {
            in_flight: 0,
            cpu_percent: 100.0,
            p99_us: 10_000,
        };
        assert_eq!(
            dynamic_weight(2, Some(&slow), false),
            60,
            "a core and 10 ms p99 cost two thirds (in whole tenths)"
        );
        let a_little_busier = LoadReport {
            in_flight: 1,
            ..slow
        };
        assert_eq!(
            dynamic_weight(2, Some(&a_little_busier), false),
            60,
            "a small swing keeps the weight"
        );
        let crushed = LoadReport {
            in_flight: 100_000,
            cpu_percent: 200.0,
            p99_us: u64::MAX / 2,
        };
        assert_eq!(
            dynamic_weight(1, Some(&crushed), false),
            10,
            "never below a tenth"
        );
    }

    #[test]
    fn capacity_weights_stay_in_requests() {
        let busy = LoadReport {
            in_flight: 10,
            cpu_percent: 0.0,
            p99_us: 0,
        };
        assert_eq!(dynamic_weight(8, None, true), 8);
        assert_eq!(dynamic_weight(8, Some(&busy), true), 4, "half the capacity");
        assert_eq!(dynamic_weight(1, Some(&busy), true), 1, "never below 1");
        assert_eq!(dynamic_weight(0, Some(&busy), true), 0, "drained");
    }

    #[test]
    fn the_local_load_counts_reads_and_their_p99() {
        let load = LocalLoad::default();
        for i in 1..=100u64 {
            load.begin();
            load.end(Duration::from_micros(i));
        }
        load.begin();
        let report = load.report();
        assert_eq!(report.in_flight, 1);
        assert_eq!(report.p99_us, 99);
        assert!(process_cpu_ticks().is_some(), "/proc/self/stat parses");
    }
}
