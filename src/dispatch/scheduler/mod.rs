//! Schedulers: which node serves the next autocommit read, with Linux Virtual Server (IPVS)
//! semantics, "connections" meaning requests in flight.
//!
//! A scheduler is a pure decision: [`Scheduler::pick`] sees the candidate nodes (weights and
//! load counters, [`Candidate`]), the request's hash key (see [`hash`]) and its own state, and
//! names a node. No clock, no I/O, and no randomness but the [`SeededRng`] the caller passes,
//! so a sequence of picks replays exactly from a seed. The caller (the read path) owns the
//! counters: it increments `active` when it sends a request and decrements it when the answer
//! comes back.
//!
//! Invariants every scheduler keeps (checked by `conformance.rs`):
//! - it picks only an *available* candidate: `eligible` (healthy, fresh enough for the
//!   request's consistency level) and `weight > 0` (weight 0 means drained);
//! - it answers `None` only when no candidate is available (`ovf` also when every available
//!   node is full, as in IPVS);
//! - a pick does not allocate in the steady state (tables are rebuilt only when the candidate
//!   set or weights change; locality schedulers allocate when they learn a new key).
//!
//! Candidates are passed whole, ineligible ones included, rather than pre-filtered: the hashing
//! schedulers (`sh`, `dh`, `mh`) build their tables over every weighted node, so a node that is
//! briefly unhealthy or lagging sends only its own keys elsewhere and gets them back when it
//! returns; and the locality schedulers must tell "my cached node is gone" from "overloaded".
//!
//! The algorithms, one file each: [`SchedulerKind`] lists them with the IPVS behaviour each one
//! keeps and where it differs. Locality and hashing schedulers given no key (say, the key
//! source is the first table and the statement reads none) fall back to a weighted
//! least-connection pick and remember nothing.

pub mod hash;
pub mod rng;

mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod load;
mod locality;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod snapshot;
mod table;
mod twos;
mod wlc;
mod wrr;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod testing;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use hash::{HashKeySource, hash_key};
pub use rng::SeededRng;

use crate::raft::types::NodeId;

/// One node a request could go to, as the read path sees it at this instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeId,
    /// Relative capacity. 0 means drained: the node gets no new requests.
    pub weight: u32,
    /// Requests in flight on the node (IPVS's active connections).
    pub active: u32,
    /// Requests that finished recently (IPVS's inactive connections), or 0 when not tracked.
    /// Counts 1/256 of an active one in the least-connection scores.
    pub inactive: u32,
    /// Healthy and fresh enough for this request's consistency level.
    pub eligible: bool,
}

impl Candidate {
    /// An eligible, idle node of this weight.
    pub fn new(node: NodeId, weight: u32) -> Self {
        Candidate {
            node,
            weight,
            active: 0,
            inactive: 0,
            eligible: true,
        }
    }

    /// May receive a new request: eligible and not drained.
    pub fn is_available(&self) -> bool {
        self.eligible && self.weight > 0
    }
}

/// A scheduling algorithm with its own state (round-robin position, key tables, lookup
/// tables). One instance serves one pool of candidates; it is `Send` so the read path can keep
/// it behind a lock or in a task, but a pick itself takes `&mut self` and no lock.
pub trait Scheduler: Send {
    /// Which algorithm this is.
    fn kind(&self) -> SchedulerKind;

    /// The node the next request goes to, or `None` when no candidate may take it.
    /// `key` is the request's hash key (from [`hash_key`]); only locality and hashing
    /// schedulers read it. `rng` is the only source of randomness (`twos` uses it).
    fn pick(
        &mut self,
        candidates: &[Candidate],
        key: Option<u64>,
        rng: &mut SeededRng,
    ) -> Option<NodeId>;
}

/// The scheduling algorithms, named exactly as `ipvsadm -s` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Round robin: the next available node in candidate order; weights only drain.
    Rr,
    /// Weighted round robin, interleaved over the weights' greatest common divisor.
    Wrr,
    /// Least connection: the lowest 256 × active + inactive.
    Lc,
    /// Weighted least connection: the lowest (256 × active + inactive) / weight. ipvsadm's
    /// default, and ours.
    #[default]
    Wlc,
    /// Shortest expected delay: the lowest (active + 1) / weight.
    Sed,
    /// Never queue: an idle node if there is one, else as `sed`.
    Nq,
    /// Locality-based least connection: a key sticks to the node it was first sent to, until
    /// that node is unavailable or overloaded while another is half idle.
    Lblc,
    /// Locality-based least connection with replication: a key owns a set of nodes, grown
    /// under load and shrunk when it stays unchanged.
    Lblcr,
    /// Destination hashing: a static weighted table of 256 buckets indexed by the key.
    Dh,
    /// Source hashing: the same table, keyed by default by the client address.
    Sh,
    /// Maglev hashing: a weighted lookup table of 4093 slots; when a node leaves, about
    /// 1/N of the keys move.
    Mh,
    /// Weighted failover: the available node of highest weight.
    Fo,
    /// Overflow: the node of highest weight while its in-flight requests are below its
    /// weight, then the next.
    Ovf,
    /// Power of two choices: two random weighted picks, the less loaded of the two.
    Twos,
}

impl SchedulerKind {
    /// Every algorithm, in the order of the list above.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Twos,
    ];

    /// The ipvsadm name.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Twos => "twos",
        }
    }

    /// Reads a weight as a capacity in requests in flight rather than as a ratio.
    pub fn weight_is_capacity(self) -> bool {
        matches!(
            self,
            SchedulerKind::Ovf | SchedulerKind::Lblc | SchedulerKind::Lblcr
        )
    }

    /// Reads the request's hash key (the others ignore it).
    pub fn uses_key(self) -> bool {
        matches!(
            self,
            SchedulerKind::Lblc
                | SchedulerKind::Lblcr
                | SchedulerKind::Dh
                | SchedulerKind::Sh
                | SchedulerKind::Mh
        )
    }

    /// The key source that matches the IPVS meaning of the algorithm when the configuration
    /// names none: the destination-keyed ones (`lblc`, `lblcr`, `dh`) key by the data the
    /// statement reads, the source-keyed ones (`sh`, `mh`) by the client.
    pub fn default_key_source(self) -> Option<HashKeySource> {
        match self {
            SchedulerKind::Lblc | SchedulerKind::Lblcr | SchedulerKind::Dh => {
                Some(HashKeySource::FirstTable)
            }
            SchedulerKind::Sh | SchedulerKind::Mh => Some(HashKeySource::ClientAddr),
            _ => None,
        }
    }
}

/// The valid scheduler names, for error messages (a test keeps it equal to
/// [`SchedulerKind::ALL`]).
pub const SCHEDULER_NAMES: &str =
    "rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, fo, ovf, twos";

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = SchedulerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| SchedulerError::UnknownScheduler {
                name: name.to_string(),
            })
    }
}

/// Settings of the stateful schedulers; the others ignore them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerParams {
    /// `lblc`/`lblcr`: the most keys remembered. Past it a new key is still scheduled but not
    /// remembered until expired keys are swept out (as IPVS, whose table holds 16,384).
    pub locality_max_keys: usize,
    /// `lblc`/`lblcr`: a key not seen for this many picks is forgotten; `lblcr` also drops the
    /// busiest node from a key's set once the set has not changed for this many picks. Picks,
    /// not seconds, since a scheduler has no clock.
    pub locality_expiry_picks: u64,
}

impl Default for SchedulerParams {
    fn default() -> Self {
        SchedulerParams {
            locality_max_keys: 16_384,
            locality_expiry_picks: 1 << 20,
        }
    }
}

impl SchedulerParams {
    /// Checks the settings once, at start-up.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if self.locality_max_keys == 0 {
            return Err(SchedulerError::InvalidParams {
                field: "locality_max_keys",
                reason: "must be at least 1",
            });
        }
        if self.locality_expiry_picks == 0 {
            return Err(SchedulerError::InvalidParams {
                field: "locality_expiry_picks",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// What can be wrong in a scheduler's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("unknown scheduler {name:?}; valid names: {SCHEDULER_NAMES}")]
    UnknownScheduler { name: String },
    #[error(
        "unknown hash key source {name:?}; valid names: {}",
        hash::KEY_SOURCE_NAMES
    )]
    UnknownKeySource { name: String },
    #[error("invalid scheduler setting {field}: {reason}")]
    InvalidParams {
        field: &'static str,
        reason: &'static str,
    },
}

/// A fresh scheduler of this kind, its state empty.
pub fn new_scheduler(
    kind: SchedulerKind,
    params: &SchedulerParams,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    params.validate()?;
    Ok(match kind {
        SchedulerKind::Rr => Box::new(rr::RoundRobin::default()),
        SchedulerKind::Wrr => Box::new(wrr::WeightedRoundRobin::default()),
        SchedulerKind::Lc => Box::new(Stateless::new(kind, lc::choose)),
        SchedulerKind::Wlc => Box::new(Stateless::new(kind, wlc::choose)),
        SchedulerKind::Sed => Box::new(Stateless::new(kind, sed::choose)),
        SchedulerKind::Nq => Box::new(Stateless::new(kind, nq::choose)),
        SchedulerKind::Lblc => Box::new(lblc::LocalityLeastConnection::new(params)),
        SchedulerKind::Lblcr => Box::new(lblcr::LocalityReplicated::new(params)),
        SchedulerKind::Dh => Box::new(dh::destination_hashing()),
        SchedulerKind::Sh => Box::new(sh::source_hashing()),
        SchedulerKind::Mh => Box::new(mh::maglev_hashing()),
        SchedulerKind::Fo => Box::new(Stateless::new(kind, fo::choose)),
        SchedulerKind::Ovf => Box::new(Stateless::new(kind, ovf::choose)),
        SchedulerKind::Twos => Box::new(Stateless::new(kind, twos::choose)),
    })
}

/// The algorithms with no state of their own (`lc`, `wlc`, `sed`, `nq`, `fo`, `ovf`, `twos`):
/// each is a plain function of the candidates (and, for `twos`, the RNG).
struct Stateless {
    kind: SchedulerKind,
    choose: fn(&[Candidate], &mut SeededRng) -> Option<NodeId>,
}

impl Stateless {
    fn new(
        kind: SchedulerKind,
        choose: fn(&[Candidate], &mut SeededRng) -> Option<NodeId>,
    ) -> Self {
        Stateless { kind, choose }
    }
}

impl Scheduler for Stateless {
    fn kind(&self) -> SchedulerKind {
        self.kind
    }

    fn pick(
        &mut self,
        candidates: &[Candidate],
        _key: Option<u64>,
        rng: &mut SeededRng,
    ) -> Option<NodeId> {
        (self.choose)(candidates, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for kind in SchedulerKind::ALL {
            assert_eq!(kind.name().parse::<SchedulerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(
                serde_json::from_str::<SchedulerKind>(&json).ok(),
                Some(kind)
            );
        }
        let listed: Vec<&str> = SchedulerKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(SCHEDULER_NAMES, listed.join(", "));
        assert_eq!(SchedulerKind::default(), SchedulerKind::Wlc);
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_valid_ones() {
        let error = "WLC".parse::<SchedulerKind>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown scheduler \"WLC\"; valid names: rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, \
             sh, mh, fo, ovf, twos"
        );
    }

    #[test]
    fn zero_sized_locality_tables_are_refused() {
        let params = SchedulerParams {
            locality_max_keys: 0,
            ..SchedulerParams::default()
        };
        assert!(matches!(
            new_scheduler(SchedulerKind::Lblc, &params),
            Err(SchedulerError::InvalidParams {
                field: "locality_max_keys",
                ..
            })
        ));
        let params: SchedulerParams =
            serde_json::from_str(r#"{"locality_expiry_picks": 10}"#).expect("parses");
        assert_eq!(params.locality_max_keys, 16_384);
        assert_eq!(params.locality_expiry_picks, 10);
    }

    #[test]
    fn only_locality_and_hashing_schedulers_read_the_key() {
        for kind in SchedulerKind::ALL {
            assert_eq!(
                kind.uses_key(),
                kind.default_key_source().is_some(),
                "{kind}"
            );
        }
    }
}
