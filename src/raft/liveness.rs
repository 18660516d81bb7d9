//! When this node last heard from a leader. A follower whose leader has gone silent for longer
//! than the election timeout must not forward writes to it: on a minority side that leader is
//! unreachable (or stopped), and forwarding would only end in a timeout with an unknown outcome.
//! The raft RPC server records every accepted AppendEntries (heartbeats included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct LeaderContact {
    origin: Instant,
    /// Milliseconds since `origin` of the last accepted AppendEntries, plus one (0 = never).
    last_ms: Arc<AtomicU64>,
}

impl LeaderContact {
    pub fn new() -> LeaderContact {
        LeaderContact {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn record(&self) {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Whether a leader was heard from within `window`.
    pub fn heard_within(&self, window: Duration) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        now.saturating_sub(last) <= window.as_millis() as u64
    }
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact::new()
    }
}
