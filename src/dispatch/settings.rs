//! The dispatcher's runtime settings — scheduler, weights, drained nodes, health probes — as
//! `GET/PUT /v1/dispatcher` shows and changes them, replicated through Raft so every node
//! dispatches the same way.
//!
//! A change is validated (a bad one is refused whole, nothing changes), then written as a row
//! of the replicated table `_phalanx_settings` by an ordinary write. Every node reads that row
//! after each health-probe round ([`load_replicated`]) and installs it when it changed; the
//! node that took the request installs it as soon as the write is applied. Until a row
//! exists, the node's start-up configuration rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dispatch::Dispatcher;
use crate::dispatch::balance::BalancerSettings;
use crate::dispatch::error::RequestError;
use crate::dispatch::health::HealthSettings;
use crate::dispatch::routing::RoutingRule;
use crate::dispatch::scheduler::{HashKeySource, SchedulerKind};
use crate::raft::metrics;
use crate::raft::types::NodeId;
use crate::storage::request::{SqlValue, Statement};

/// The replicated table holding runtime settings (created on every node at open).
pub const SETTINGS_TABLE: &str = "_phalanx_settings";
const DISPATCHER_KEY: &str = "dispatcher";

/// The dispatcher's settings as the API shows and stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    pub scheduler: SchedulerKind,
    /// Configured weight per node id.
    pub weights: BTreeMap<NodeId, u32>,
    pub default_weight: u32,
    pub key_source: Option<HashKeySource>,
    /// Nodes in maintenance (weight 0, whatever their configured weight).
    pub drained: BTreeSet<NodeId>,
    /// Tags per node, which routing rules name.
    #[serde(default)]
    pub tags: BTreeMap<NodeId, BTreeSet<String>>,
    /// Routing rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
    /// Effective weights follow each node's reported load (in hundredths of the configured).
    #[serde(default)]
    pub dynamic_weights: bool,
    pub health: HealthConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    pub interval_ms: u64,
    pub fall: u32,
    pub rise: u32,
    pub max_lag_entries: u64,
}

/// A change: every field optional; `drain`/`undrain` add to and remove from `drained`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherUpdate {
    pub scheduler: Option<String>,
    pub weights: Option<BTreeMap<NodeId, u32>>,
    pub default_weight: Option<u32>,
    /// `null` is not distinguishable from absent here; use `"none"` to clear.
    pub key_source: Option<String>,
    pub drain: Option<Vec<NodeId>>,
    pub undrain: Option<Vec<NodeId>>,
    /// Replaces the tags of the nodes named (an empty list clears a node's tags).
    pub tags: Option<BTreeMap<NodeId, BTreeSet<String>>>,
    /// Replaces the whole rule list.
    pub rules: Option<Vec<RoutingRule>>,
    pub dynamic_weights: Option<bool>,
    pub health: Option<HealthUpdate>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthUpdate {
    pub interval_ms: Option<u64>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub max_lag_entries: Option<u64>,
}

/// A refused change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSettings(pub String);

impl DispatcherConfig {
    /// The settings a node runs now.
    pub fn current(d: &Dispatcher) -> DispatcherConfig {
        let balancer = d.balancer.settings();
        let health = d.health.settings();
        DispatcherConfig {
            scheduler: balancer.scheduler,
            weights: balancer.weights,
            default_weight: balancer.default_weight,
            key_source: balancer.key_source,
            drained: balancer.drained,
            tags: balancer.tags,
            rules: balancer.rules,
            dynamic_weights: balancer.dynamic_weights,
            health: HealthConfig {
                interval_ms: u64::try_from(health.interval.as_millis()).unwrap_or(u64::MAX),
                fall: health.fall,
                rise: health.rise,
                max_lag_entries: health.max_lag,
            },
        }
    }

    /// This configuration with `update` applied; refused if any part is invalid.
    /// `members` are the cluster's node ids: weights and drains must name them.
    pub fn updated(
        &self,
        update: &DispatcherUpdate,
        members: &BTreeSet<NodeId>,
    ) -> Result<DispatcherConfig, InvalidSettings> {
        let mut next = self.clone();
        let unknown = |nodes: &mut dyn Iterator<Item = &NodeId>, what: &str| {
            let unknown: Vec<String> = nodes
                .filter(|n| !members.contains(n))
                .map(ToString::to_string)
                .collect();
            if unknown.is_empty() {
                Ok(())
            } else {
                Err(InvalidSettings(format!(
                    "{what} names unknown node(s) {}; members are {members:?}",
                    unknown.join(", ")
                )))
            }
        };
        if let Some(name) = &update.scheduler {
            next.scheduler =
                name.trim()
                    .parse()
                    .map_err(|e: crate::dispatch::scheduler::SchedulerError| {
                        InvalidSettings(e.to_string())
                    })?;
        }
        if let Some(weights) = &update.weights {
            unknown(&mut weights.keys(), "weights")?;
            next.weights.extend(weights.iter().map(|(n, w)| (*n, *w)));
        }
        if let Some(weight) = update.default_weight {
            next.default_weight = weight;
        }
        if let Some(source) = &update.key_source {
            next.key_source = match source.trim() {
                "none" | "" => None,
                name => Some(name.parse().map_err(
                    |e: crate::dispatch::scheduler::SchedulerError| InvalidSettings(e.to_string()),
                )?),
            };
        }
        if let Some(drain) = &update.drain {
            unknown(&mut drain.iter(), "drain")?;
            next.drained.extend(drain.iter().copied());
        }
        if let Some(tags) = &update.tags {
            unknown(&mut tags.keys(), "tags")?;
            for (node, node_tags) in tags {
                if node_tags.is_empty() {
                    next.tags.remove(node);
                } else {
                    next.tags.insert(*node, node_tags.clone());
                }
            }
        }
        if let Some(rules) = &update.rules {
            next.rules = rules.clone();
        }
        if let Some(dynamic) = update.dynamic_weights {
            next.dynamic_weights = dynamic;
        }
        if let Some(undrain) = &update.undrain {
            for node in undrain {
                next.drained.remove(node);
            }
        }
        if let Some(health) = update.health {
            if let Some(interval) = health.interval_ms {
                next.health.interval_ms = interval;
            }
            if let Some(fall) = health.fall {
                next.health.fall = fall;
            }
            if let Some(rise) = health.rise {
                next.health.rise = rise;
            }
            if let Some(lag) = health.max_lag_entries {
                next.health.max_lag_entries = lag;
            }
        }
        next.validate()?;
        Ok(next)
    }

    fn validate(&self) -> Result<(), InvalidSettings> {
        if !(10..=60_000).contains(&self.health.interval_ms) {
            return Err(InvalidSettings(
                "health.interval_ms must be between 10 and 60000".into(),
            ));
        }
        if self.health.fall == 0 || self.health.rise == 0 {
            return Err(InvalidSettings(
                "health.fall and health.rise must be at least 1".into(),
            ));
        }
        self.balancer()
            .check()
            .map_err(|e| InvalidSettings(e.to_string()))?;
        Ok(())
    }

    fn balancer(&self) -> BalancerSettings {
        BalancerSettings {
            scheduler: self.scheduler,
            weights: self.weights.clone(),
            default_weight: self.default_weight,
            key_source: self.key_source,
            drained: self.drained.clone(),
            tags: self.tags.clone(),
            rules: self.rules.clone(),
            dynamic_weights: self.dynamic_weights,
        }
    }

    /// Makes this node dispatch by these settings.
    pub fn install(&self, d: &Dispatcher) -> Result<(), InvalidSettings> {
        self.validate()?;
        d.balancer
            .configure(self.balancer())
            .map_err(|e| InvalidSettings(e.to_string()))?;
        d.health.configure(HealthSettings {
            interval: std::time::Duration::from_millis(self.health.interval_ms),
            fall: self.health.fall,
            rise: self.health.rise,
            max_lag: self.health.max_lag_entries,
        });
        Ok(())
    }
}

/// The cluster's member ids.
pub fn members(d: &Dispatcher) -> BTreeSet<NodeId> {
    metrics::snapshot(&d.raft)
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect()
}

/// Validates `update`, replicates the resulting settings, and installs them here once the
/// write is applied on this node. Returns them.
pub async fn change(
    d: &Dispatcher,
    update: &DispatcherUpdate,
) -> Result<Result<DispatcherConfig, InvalidSettings>, RequestError> {
    let next = match DispatcherConfig::current(d).updated(update, &members(d)) {
        Ok(next) => next,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let text = serde_json::to_string(&next)
        .map_err(|e| RequestError::Unavailable(format!("encode settings: {e}")))?;
    d.execute(vec![Statement {
        sql: format!("INSERT OR REPLACE INTO {SETTINGS_TABLE} (key, value) VALUES (?1, ?2)"),
        params: vec![SqlValue::Text(DISPATCHER_KEY.into()), SqlValue::Text(text)],
    }])
    .await?;
    // Installed here now (other nodes install it after their next probe round).
    if let Err(e) = next.install(d) {
        return Ok(Err(e));
    }
    Ok(Ok(next))
}

/// Installs the replicated settings if they differ from `last` (the text last seen); returns
/// the text now in force. An unreadable or invalid row is logged and skipped.
pub async fn load_replicated(d: &Dispatcher, last: Option<String>) -> Option<String> {
    let read = d
        .engine
        .query(Statement {
            sql: format!("SELECT value FROM {SETTINGS_TABLE} WHERE key = ?1"),
            params: vec![SqlValue::Text(DISPATCHER_KEY.into())],
        })
        .await;
    let text = match read {
        Ok(result) => match result.rows.first().and_then(|row| row.first()) {
            Some(SqlValue::Text(text)) => text.clone(),
            _ => return last,
        },
        Err(e) => {
            tracing::warn!("reading the dispatcher settings: {e}");
            return last;
        }
    };
    if last.as_deref() == Some(text.as_str()) {
        return last;
    }
    match serde_json::from_str::<DispatcherConfig>(&text)
        .map_err(|e| InvalidSettings(e.to_string()))
        .and_then(|config| config.install(d))
    {
        Ok(()) => tracing::info!("dispatcher settings installed: {text}"),
        Err(e) => tracing::warn!("replicated dispatcher settings refused: {e}"),
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DispatcherConfig {
        DispatcherConfig {
            scheduler: SchedulerKind::Wlc,
            weights: BTreeMap::new(),
            default_weight: 1,
            key_source: None,
            drained: BTreeSet::new(),
            tags: BTreeMap::new(),
            rules: Vec::new(),
            dynamic_weights: false,
            health: HealthConfig {
                interval_ms: 200,
                fall: 3,
                rise: 2,
                max_lag_entries: 1000,
            },
        }
    }

    #[test]
    fn updates_merge_and_bad_ones_are_refused_whole() {
        let members = BTreeSet::from([1, 2, 3]);
        let update: DispatcherUpdate = serde_json::from_str(
            r#"{"scheduler":"wrr","weights":{"1":3,"2":2,"3":1},"drain":[2],"health":{"fall":5}}"#,
        )
        .expect("update");
        let next = config().updated(&update, &members).expect("valid");
        assert_eq!(next.scheduler, SchedulerKind::Wrr);
        assert_eq!(next.weights, BTreeMap::from([(1, 3), (2, 2), (3, 1)]));
        assert_eq!(next.drained, BTreeSet::from([2]));
        assert_eq!((next.health.fall, next.health.rise), (5, 2));
        assert_eq!(
            next.balancer()
                .effective_weight(2, None, SchedulerKind::Wlc),
            0
        );

        for bad in [
            r#"{"scheduler":"fastest"}"#,
            r#"{"weights":{"9":1}}"#,
            r#"{"drain":[7]}"#,
            r#"{"health":{"interval_ms":1}}"#,
            r#"{"health":{"rise":0}}"#,
            r#"{"key_source":"moon"}"#,
            r#"{"rules":[{"name":"r","target":{"tag":"reporting"}}]}"#,
            r#"{"tags":{"8":["reporting"]}}"#,
            r#"{"key_source":"rule_key"}"#,
            r#"{"key_source":"rule_key","rules":[{"name":"r","sql":"id = 1","target":"leader"}]}"#,
        ] {
            let update: DispatcherUpdate = serde_json::from_str(bad).expect("parses");
            assert!(config().updated(&update, &members).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<DispatcherUpdate>(r#"{"schedular":"rr"}"#).is_err());
        let keyed: DispatcherUpdate = serde_json::from_str(
            r#"{"key_source":"rule_key","rules":[{"name":"r","sql":"id = (\\d+)","target":"leader"}]}"#,
        )
        .expect("parses");
        assert!(
            config().updated(&keyed, &members).is_ok(),
            "a rule with a capture group gives the key"
        );
    }
}
