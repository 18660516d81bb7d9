//! The read balancer: which node serves each autocommit read. It holds the configured
//! scheduler (`dispatch::scheduler`), each node's configured weight, and per-node counters:
//! requests in flight (the schedulers' "active connections"), requests that ended within the
//! last one to two seconds (their "inactive connections", the way IPVS counts closed
//! connections lingering in TIME_WAIT), requests, errors, bytes out and recent latencies —
//! what `/v1/status` shows, like `ipvsadm -Ln --stats`.
//!
//! Counting recently ended requests as inactive matters for one client issuing reads one at a
//! time: nothing is ever in flight at a pick, so without them `wlc` and `lc` would send every
//! read to the first node in candidate order.
//!
//! A pick takes a std mutex for the scheduler call only (well under a microsecond); counters
//! are updated under the same lock when a request starts and ends.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::dispatch::routing::{CompiledRule, ReadContext, RoutingRule, RuleError, RuleTarget};
use crate::dispatch::scheduler::{
    Candidate, HashKeySource, Scheduler, SchedulerError, SchedulerKind, SchedulerParams, SeededRng,
    hash_key, new_scheduler,
};
use crate::raft::types::NodeId;

/// Latencies kept per node for the percentiles.
const LATENCY_WINDOW: usize = 1024;

/// How reads are balanced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerSettings {
    pub scheduler: SchedulerKind,
    /// Configured weight per node; a node not listed has `default_weight`.
    pub weights: BTreeMap<NodeId, u32>,
    pub default_weight: u32,
    /// Where locality and hashing schedulers take their key from.
    pub key_source: Option<HashKeySource>,
    /// Nodes in maintenance: weight 0 whatever their configured weight.
    pub drained: std::collections::BTreeSet<NodeId>,
    /// Tags per node, for routing rules (`reporting`, ...).
    pub tags: BTreeMap<NodeId, std::collections::BTreeSet<String>>,
    /// Routing rules, in order.
    pub rules: Vec<RoutingRule>,
    /// Derive effective weights from the load each node reports (`dispatch::load`): then
    /// weights are in hundredths of the configured ones.
    pub dynamic_weights: bool,
}

impl BalancerSettings {
    /// The weight `scheduler` sees: 0 when drained, else the configured one — scaled by the
    /// node's reported load under dynamic weights (`dispatch::load::dynamic_weight`).
    pub fn effective_weight(
        &self,
        node: NodeId,
        load: Option<&crate::dispatch::load::LoadReport>,
        scheduler: SchedulerKind,
    ) -> u32 {
        if self.drained.contains(&node) {
            return 0;
        }
        let configured = self.configured_weight(node);
        if self.dynamic_weights {
            crate::dispatch::load::dynamic_weight(configured, load, scheduler.weight_is_capacity())
        } else {
            configured
        }
    }

    /// Checks that the settings hang together, as the API and the config file both need:
    /// the routing rules compile and name existing tags, and `rule_key` has a rule whose regex
    /// captures a key (without one it would hash nothing).
    pub fn check(&self) -> Result<(), BalancerError> {
        let rules = crate::dispatch::routing::compile(&self.rules, &self.tags)?;
        if self.key_source == Some(HashKeySource::RuleKey) && !rules.iter().any(|r| r.has_key()) {
            return Err(BalancerError::RuleKeyWithoutRule);
        }
        Ok(())
    }

    pub fn configured_weight(&self, node: NodeId) -> u32 {
        self.weights
            .get(&node)
            .copied()
            .unwrap_or(self.default_weight)
    }
}

impl Default for BalancerSettings {
    fn default() -> Self {
        BalancerSettings {
            scheduler: SchedulerKind::default(),
            weights: BTreeMap::new(),
            default_weight: 1,
            key_source: None,
            drained: Default::default(),
            tags: BTreeMap::new(),
            rules: Vec::new(),
            dynamic_weights: false,
        }
    }
}

/// A bad balancer setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalancerError {
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("invalid weights {text:?}: {reason} (expected ID=WEIGHT pairs, e.g. 1=3,2=2,3=1)")]
    Weights { text: String, reason: String },
    #[error("invalid node id {text:?} in the dispatcher tags")]
    TagNode { text: String },
    #[error(
        "key_source rule_key needs a routing rule whose sql regex has a capture group (what it captures is the key); set both in one change"
    )]
    RuleKeyWithoutRule,
}

/// Parses `1=3,2=2,3=1`.
pub fn parse_weights(text: &str) -> Result<BTreeMap<NodeId, u32>, BalancerError> {
    let invalid = |reason: &str| BalancerError::Weights {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut weights = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, weight) = pair.split_once('=').ok_or_else(|| invalid("missing '='"))?;
        let id: NodeId = id.trim().parse().map_err(|_| invalid("bad node id"))?;
        let weight: u32 = weight.trim().parse().map_err(|_| invalid("bad weight"))?;
        if weights.insert(id, weight).is_some() {
            return Err(invalid("a node is listed twice"));
        }
    }
    Ok(weights)
}

/// Requests per whole second, for the 1 s / 10 s / 60 s rates: (second, count), oldest
/// first, at most 61 entries.
#[derive(Debug, Default)]
struct PerSecond(std::collections::VecDeque<(u64, u64)>);

impl PerSecond {
    fn count(&mut self, second: u64) {
        match self.0.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => self.0.push_back((second, 1)),
        }
        while self
            .0
            .front()
            .is_some_and(|(s, _)| second.saturating_sub(*s) > 60)
        {
            self.0.pop_front();
        }
    }

    /// Requests per second over the `window` whole seconds before `now`.
    /// Requests counted in this whole second and the one before.
    fn recent(&self, now: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .take_while(|(s, _)| now.saturating_sub(*s) <= 1)
            .map(|(_, n)| n)
            .sum()
    }

    fn rate(&self, now: u64, window: u64) -> f64 {
        let total: u64 = self
            .0
            .iter()
            .filter(|(s, _)| *s < now && now - *s <= window)
            .map(|(_, n)| n)
            .sum();
        total as f64 / window as f64
    }
}

/// The traffic counters of one node, or of one routing rule.
#[derive(Debug, Default)]
struct Counters {
    per_second: PerSecond,
    /// Requests ended per second, for the inactive count.
    ended_per_second: PerSecond,
    in_flight: u32,
    requests: u64,
    errors: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// The last [`LATENCY_WINDOW`] latencies in microseconds, a ring.
    latencies: Vec<u64>,
    next_latency: usize,
    /// The effective weight the node had at the last pick among candidates including it.
    weight: Option<u32>,
}

/// How one read went, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTraffic {
    /// False when the node failed it (not for a SQL error: that is the statement's fault).
    pub ok: bool,
    /// The request's size: SQL text and parameters.
    pub bytes_in: u64,
    /// The result's size.
    pub bytes_out: u64,
    pub latency: Duration,
}

impl Counters {
    fn inactive(&self, now: u64) -> u32 {
        u32::try_from(self.ended_per_second.recent(now)).unwrap_or(u32::MAX)
    }

    fn start(&mut self, second: u64) {
        self.in_flight += 1;
        self.requests += 1;
        self.per_second.count(second);
    }

    fn end(&mut self, second: u64, traffic: ReadTraffic) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.ended_per_second.count(second);
        if !traffic.ok {
            self.errors += 1;
        }
        self.bytes_in += traffic.bytes_in;
        self.bytes_out += traffic.bytes_out;
        let micros = u64::try_from(traffic.latency.as_micros()).unwrap_or(u64::MAX);
        if self.latencies.len() < LATENCY_WINDOW {
            self.latencies.push(micros);
        } else {
            self.latencies[self.next_latency] = micros;
        }
        self.next_latency = (self.next_latency + 1) % LATENCY_WINDOW;
    }

    fn shown(&self, now: u64) -> Traffic {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let percentile =
            |p: usize| (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) * p / 100]);
        Traffic {
            in_flight: self.in_flight,
            inactive: self.inactive(now),
            requests: self.requests,
            errors: self.errors,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_p50_us: percentile(50),
            latency_p99_us: percentile(99),
            rate_1s: self.per_second.rate(now, 1),
            rate_10s: self.per_second.rate(now, 10),
            rate_60s: self.per_second.rate(now, 60),
        }
    }
}

/// Traffic counters as shown, for a node or a routing rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    pub in_flight: u32,
    /// Requests that ended in this whole second or the one before.
    pub inactive: u32,
    pub requests: u64,
    pub errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    /// Requests per second over the last 1, 10 and 60 whole seconds.
    pub rate_1s: f64,
    pub rate_10s: f64,
    pub rate_60s: f64,
}

/// One node's counters as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStats {
    pub node: NodeId,
    pub weight: u32,
    #[serde(flatten)]
    pub traffic: Traffic,
}

/// One routing rule's counters as shown: `requests` are its hits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStats {
    pub name: String,
    #[serde(flatten)]
    pub traffic: Traffic,
}

struct State {
    settings: BalancerSettings,
    scheduler: Box<dyn Scheduler>,
    rng: SeededRng,
    nodes: BTreeMap<NodeId, Counters>,
    /// Reused for each pick, so a pick does not allocate.
    candidates: Vec<Candidate>,
    /// Seconds for the rates count from here.
    epoch: std::time::Instant,
    /// The routing rules, compiled, and each one's traffic.
    rules: Vec<(CompiledRule, Counters)>,
    /// Schedulers named by routing rules, created on first use.
    rule_schedulers: std::collections::HashMap<SchedulerKind, Box<dyn Scheduler>>,
}

impl State {
    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn count_start(&mut self, node: NodeId) {
        let second = self.second();
        self.nodes.entry(node).or_default().start(second);
    }
}

/// The balancer; one per node, shared by every session.
pub struct ReadBalancer {
    state: Mutex<State>,
}

/// The routing rule a read matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Its position among the rules.
    pub position: usize,
    pub target: RuleTarget,
    /// The hash of what its SQL regex's first capture group matched.
    pub key: Option<u64>,
}

/// What a pick may choose from: a node and whether it may serve this read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eligible {
    pub node: NodeId,
    pub eligible: bool,
    /// Its last reported load (for dynamic weights).
    pub load: Option<crate::dispatch::load::LoadReport>,
}

impl ReadBalancer {
    pub fn new(settings: BalancerSettings, seed: u64) -> Result<ReadBalancer, BalancerError> {
        let scheduler = new_scheduler(settings.scheduler, &SchedulerParams::default())?;
        let rules = crate::dispatch::routing::compile(&settings.rules, &settings.tags)?
            .into_iter()
            .map(|rule| (rule, Counters::default()))
            .collect();
        Ok(ReadBalancer {
            state: Mutex::new(State {
                rules,
                rule_schedulers: std::collections::HashMap::new(),
                settings,
                scheduler,
                rng: SeededRng::new(seed),
                nodes: BTreeMap::new(),
                candidates: Vec::new(),
                epoch: std::time::Instant::now(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only counters behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current settings.
    pub fn settings(&self) -> BalancerSettings {
        self.lock().settings.clone()
    }

    /// Replaces the settings; the scheduler starts over (its state belongs to the old one).
    pub fn configure(&self, settings: BalancerSettings) -> Result<(), BalancerError> {
        let scheduler = new_scheduler(settings.scheduler, &SchedulerParams::default())?;
        let rules = crate::dispatch::routing::compile(&settings.rules, &settings.tags)?;
        let mut state = self.lock();
        state.scheduler = scheduler;
        state.rule_schedulers.clear();
        // Counters carry over for rules that keep their name.
        let mut old: BTreeMap<String, Counters> = std::mem::take(&mut state.rules)
            .into_iter()
            .map(|(r, counters)| (r.rule.name.clone(), counters))
            .collect();
        state.rules = rules
            .into_iter()
            .map(|r| {
                let counters = old.remove(&r.rule.name).unwrap_or_default();
                (r, counters)
            })
            .collect();
        state.settings = settings;
        Ok(())
    }

    /// The first routing rule `sql` matches (its hit counted as a read started): its position
    /// (pass it to [`ReadBalancer::finish`]), where it sends the read, and the hash key its
    /// SQL regex captured.
    pub fn route(&self, sql: &str, context: &ReadContext) -> Option<Routed> {
        let mut state = self.lock();
        if state.rules.is_empty() {
            return None;
        }
        let second = state.second();
        let tables = crate::dispatch::routing::tables_read(sql);
        let (position, (rule, counters)) = state
            .rules
            .iter_mut()
            .enumerate()
            .find(|(_, (rule, _))| rule.matches(sql, &tables, context))?;
        counters.start(second);
        Some(Routed {
            position,
            target: rule.rule.target.clone(),
            key: rule.key(sql).map(|k| hash_key(k.as_bytes())),
        })
    }

    /// The nodes carrying `tag`.
    pub fn tagged(&self, tag: &str) -> Vec<NodeId> {
        self.lock()
            .settings
            .tags
            .iter()
            .filter(|(_, tags)| tags.contains(tag))
            .map(|(node, _)| *node)
            .collect()
    }

    /// Each routing rule's traffic, in order (`requests` are its hits).
    pub fn rule_stats(&self) -> Vec<RuleStats> {
        let state = self.lock();
        let now = state.second();
        state
            .rules
            .iter()
            .map(|(rule, counters)| RuleStats {
                name: rule.rule.name.clone(),
                traffic: counters.shown(now),
            })
            .collect()
    }

    /// The key a request hashes to under the configured key source, from what the caller
    /// knows: the first table it reads, its session, its client's address and the key its
    /// routing rule captured.
    pub fn key(
        &self,
        first_table: Option<&str>,
        session: Option<u64>,
        client_addr: Option<std::net::IpAddr>,
        rule_key: Option<u64>,
    ) -> Option<u64> {
        let source = {
            let state = self.lock();
            if !state.settings.scheduler.uses_key() {
                return None;
            }
            state
                .settings
                .key_source
                .or(state.settings.scheduler.default_key_source())
        };
        match source? {
            HashKeySource::FirstTable => first_table.map(|t| hash_key(t.as_bytes())),
            HashKeySource::Session => session.map(|s| hash_key(&s.to_be_bytes())),
            HashKeySource::ClientAddr => client_addr.map(|addr| match addr {
                std::net::IpAddr::V4(v4) => hash_key(&v4.octets()),
                std::net::IpAddr::V6(v6) => hash_key(&v6.octets()),
            }),
            HashKeySource::RuleKey => rule_key,
        }
    }

    /// Picks the node for one read among `nodes`, and counts it as started there. `None`
    /// when none may serve it.
    pub fn start(
        &self,
        nodes: &[Eligible],
        key: Option<u64>,
        scheduler: Option<SchedulerKind>,
    ) -> Option<NodeId> {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.candidates.clear();
        let now = state.second();
        let kind = scheduler.unwrap_or(state.settings.scheduler);
        for n in nodes {
            let counters = state.nodes.entry(n.node).or_default();
            let weight = state
                .settings
                .effective_weight(n.node, n.load.as_ref(), kind);
            counters.weight = Some(weight);
            state.candidates.push(Candidate {
                node: n.node,
                weight,
                active: counters.in_flight,
                inactive: counters.inactive(now),
                eligible: n.eligible,
            });
        }
        let chosen = match scheduler {
            Some(kind) if kind != state.settings.scheduler => {
                let named = match state.rule_schedulers.entry(kind) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(new_scheduler(kind, &SchedulerParams::default()).ok()?)
                    }
                };
                named.pick(&state.candidates, key, &mut state.rng)
            }
            _ => state.scheduler.pick(&state.candidates, key, &mut state.rng),
        };
        let node = chosen?;
        state.count_start(node);
        Some(node)
    }

    /// Counts a read started on `node` without a pick (served locally because nothing else
    /// could be chosen).
    pub fn start_on(&self, node: NodeId) {
        self.lock().count_start(node);
    }

    /// Ends a read started on `node`, sent there by routing rule `rule` (its position from
    /// [`ReadBalancer::route`]; if the rules changed meanwhile, a rule's counters may be off
    /// by this one read).
    pub fn finish(&self, node: NodeId, rule: Option<usize>, traffic: ReadTraffic) {
        let mut state = self.lock();
        let second = state.second();
        state.nodes.entry(node).or_default().end(second, traffic);
        if let Some((_, counters)) = rule.and_then(|r| state.rules.get_mut(r)) {
            counters.end(second, traffic);
        }
    }

    /// Every node's counters, by node id.
    pub fn stats(&self) -> Vec<NodeStats> {
        let state = self.lock();
        let now = state.second();
        state
            .nodes
            .iter()
            .map(|(node, c)| NodeStats {
                node: *node,
                // The weight its last pick saw (with dynamic weights, from that moment's load).
                weight: c.weight.unwrap_or_else(|| {
                    let kind = state.settings.scheduler;
                    state.settings.effective_weight(*node, None, kind)
                }),
                traffic: c.shown(now),
            })
            .collect()
    }
}

/// The first table a SELECT reads, for the `first_table` hash key (the routing rules' table
/// heuristic, `routing::tables_read`). A wrong guess only moves a read.
pub fn first_table(sql: &str) -> Option<String> {
    crate::dispatch::routing::tables_read(sql)
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(bytes_out: u64, micros: u64) -> ReadTraffic {
        ReadTraffic {
            ok: true,
            bytes_in: 1,
            bytes_out,
            latency: Duration::from_micros(micros),
        }
    }

    fn all(nodes: &[NodeId]) -> Vec<Eligible> {
        nodes
            .iter()
            .map(|&node| Eligible {
                node,
                eligible: true,
                load: None,
            })
            .collect()
    }

    fn loaded(node: NodeId, in_flight: u32) -> Eligible {
        Eligible {
            node,
            eligible: true,
            load: Some(crate::dispatch::load::LoadReport {
                in_flight,
                cpu_percent: 0.0,
                p99_us: 0,
            }),
        }
    }

    #[test]
    fn dynamic_weights_move_reads_away_from_loaded_nodes() {
        let balancer = ReadBalancer::new(
            BalancerSettings {
                scheduler: SchedulerKind::Wrr,
                dynamic_weights: true,
                ..BalancerSettings::default()
            },
            7,
        )
        .expect("balancer");
        // Node 2 reports 10 reads in flight (half its weight); node 3 has not reported yet and
        // counts as idle.
        let nodes = vec![loaded(1, 0), loaded(2, 10), all(&[3]).remove(0)];
        let mut served = BTreeMap::<NodeId, u32>::new();
        for _ in 0..500 {
            let node = balancer.start(&nodes, None, None).expect("a node");
            balancer.finish(node, None, traffic(10, 100));
            *served.entry(node).or_default() += 1;
        }
        assert_eq!(served, BTreeMap::from([(1, 200), (2, 100), (3, 200)]));
        let weights: Vec<u32> = balancer.stats().iter().map(|s| s.weight).collect();
        assert_eq!(weights, [100, 50, 100], "stats show the effective weights");
    }

    #[test]
    fn dynamic_weights_keep_overflow_capacities_in_requests() {
        let balancer = ReadBalancer::new(
            BalancerSettings {
                scheduler: SchedulerKind::Ovf,
                weights: parse_weights("1=2,2=1").expect("weights"),
                dynamic_weights: true,
                ..BalancerSettings::default()
            },
            7,
        )
        .expect("balancer");
        let nodes = vec![loaded(1, 0), loaded(2, 0)];
        // Node 1 takes two reads in flight, then the third spills to node 2.
        let picks: Vec<NodeId> = (0..3)
            .map(|_| balancer.start(&nodes, None, None).expect("a node"))
            .collect();
        assert_eq!(picks, [1, 1, 2]);
    }

    #[test]
    fn wrr_weights_split_reads_and_counters_follow() {
        let balancer = ReadBalancer::new(
            BalancerSettings {
                scheduler: SchedulerKind::Wrr,
                weights: parse_weights("1=3,2=2,3=1").expect("weights"),
                ..BalancerSettings::default()
            },
            7,
        )
        .expect("balancer");
        let nodes = all(&[1, 2, 3]);
        for _ in 0..600 {
            let node = balancer.start(&nodes, None, None).expect("a node");
            balancer.finish(node, None, traffic(10, 100));
        }
        let requests: Vec<u64> = balancer
            .stats()
            .iter()
            .map(|s| s.traffic.requests)
            .collect();
        assert_eq!(requests, [300, 200, 100]);
        assert!(balancer.stats().iter().all(|s| s.traffic.in_flight == 0));
        assert_eq!(balancer.stats()[0].traffic.latency_p99_us, Some(100));
    }

    #[test]
    fn one_read_at_a_time_under_wlc_spreads_over_equal_nodes() {
        // Nothing is in flight at any pick, so only the inactive count (reads that just
        // ended) tells the nodes apart; without it every read would go to node 1.
        let balancer = ReadBalancer::new(BalancerSettings::default(), 3).expect("balancer");
        let nodes = all(&[1, 2, 3]);
        for _ in 0..30 {
            let node = balancer.start(&nodes, None, None).expect("a node");
            balancer.finish(node, None, traffic(0, 50));
        }
        let stats = balancer.stats();
        let requests: Vec<u64> = stats.iter().map(|s| s.traffic.requests).collect();
        // A second boundary may pass mid-loop and reset the inactive counts once.
        assert!(requests.iter().all(|&r| r >= 8), "{requests:?}");
        assert!(stats.iter().all(|s| s.traffic.inactive > 0), "{stats:?}");
    }

    #[test]
    fn hash_keys_come_from_the_configured_source() {
        let with = |source: &str| {
            ReadBalancer::new(
                BalancerSettings {
                    scheduler: SchedulerKind::Sh,
                    key_source: Some(source.parse().expect("source")),
                    ..BalancerSettings::default()
                },
                1,
            )
            .expect("balancer")
        };
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        let b: std::net::IpAddr = [10, 0, 0, 2].into();
        let by_addr = with("client_addr");
        // The client's address, whatever the session.
        assert_eq!(
            by_addr.key(None, Some(1), Some(a), None),
            by_addr.key(None, Some(2), Some(a), None)
        );
        assert_ne!(
            by_addr.key(None, Some(1), Some(a), None),
            by_addr.key(None, Some(1), Some(b), None)
        );
        let by_session = with("session");
        assert_ne!(
            by_session.key(None, Some(1), Some(a), None),
            by_session.key(None, Some(2), Some(a), None)
        );
        let by_rule = with("rule_key");
        assert_eq!(by_rule.key(Some("t"), Some(1), Some(a), Some(42)), Some(42));
        assert_eq!(by_rule.key(Some("t"), Some(1), Some(a), None), None);
    }

    #[test]
    fn recent_counts_this_second_and_the_one_before() {
        let mut ended = PerSecond::default();
        for second in [3, 4, 4, 5, 5, 5] {
            ended.count(second);
        }
        assert_eq!(ended.recent(5), 5);
        assert_eq!(ended.recent(6), 3);
        assert_eq!(ended.recent(7), 0);
    }

    #[test]
    fn ineligible_nodes_are_skipped_and_none_is_none() {
        let balancer = ReadBalancer::new(BalancerSettings::default(), 1).expect("balancer");
        let nodes = [
            Eligible {
                node: 1,
                eligible: false,
                load: None,
            },
            Eligible {
                node: 2,
                eligible: true,
                load: None,
            },
        ];
        for _ in 0..10 {
            assert_eq!(balancer.start(&nodes, None, None), Some(2));
        }
        let none = [Eligible {
            node: 1,
            eligible: false,
            load: None,
        }];
        assert_eq!(balancer.start(&none, None, None), None);
    }

    #[test]
    fn rates_count_whole_seconds_before_now() {
        let mut per_second = PerSecond::default();
        for second in [0, 0, 1, 1, 1, 5, 9, 65] {
            per_second.count(second);
        }
        assert_eq!(
            per_second.0.front(),
            Some(&(5, 1)),
            "older than 60 s dropped"
        );
        let mut recent = PerSecond::default();
        for second in [0, 0, 1, 1, 1, 5, 9] {
            recent.count(second);
        }
        assert_eq!(recent.rate(2, 1), 3.0, "second 1 had 3");
        assert_eq!(recent.rate(10, 10), 0.7, "seconds 0..=9 had 7");
        assert_eq!(recent.rate(9, 1), 0.0, "second 8 had none");
    }

    #[test]
    fn weights_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_weights(" 1=3, 2=0 ").expect("weights"),
            BTreeMap::from([(1, 3), (2, 0)])
        );
        assert!(parse_weights("1=3,1=2").is_err());
        assert!(parse_weights("x=1").is_err());
        assert!(parse_weights("1").is_err());
        assert_eq!(
            first_table("SELECT a FROM \"Items\" WHERE b = 1").as_deref(),
            Some("items")
        );
    }
}
