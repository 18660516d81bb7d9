//! One node's configuration: every default in one place, loaded as
//! defaults → TOML file (`--config`) → `PHALANX_*` environment variables → command-line flags,
//! and validated once at start-up. Units are last in names (`_ms`, `_bytes`).
//! `phalanx.example.toml` in the repository documents every key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::frontend::pg::auth::hash::PasswordHash;
use crate::frontend::pg::auth::{AuthMethod, AuthSettings};
use crate::ids::{self, Clock, GeneratorSettings, Layout, SystemClock};
use crate::raft::types::NodeId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster, never reused.
    pub id: NodeId,
    /// Directory of the node's database, Raft log and snapshots.
    pub data: PathBuf,
    /// PostgreSQL wire protocol address.
    pub listen_pg: String,
    /// HTTP JSON API address.
    pub listen_http: String,
    /// Internal RPC address (Raft, forwarding, snapshots).
    pub listen_raft: String,
    /// Bootstrap a new cluster: `1=HOST:RAFTPORT,2=HOST:RAFTPORT,...` (this node included).
    pub initial_cluster: Option<String>,
    /// Join an existing cluster through any member's HTTP address.
    pub join: Option<String>,
    /// Start without bootstrapping and wait to be added (`phalanx node add`).
    pub no_bootstrap: bool,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot (and purge the log behind it) every this many applied entries.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot for slow followers.
    pub log_entries_kept_after_snapshot: u64,
    /// Largest HTTP request body.
    pub max_request_bytes: usize,
    /// Largest PostgreSQL protocol message a client may send; a larger one gets SQLSTATE 54000
    /// and the connection is closed.
    pub max_message_bytes: usize,
    /// Most concurrent PostgreSQL sessions on this node; one more gets SQLSTATE 53300.
    pub max_pg_connections: usize,
    pub write_timeout_ms: u64,
    pub read_timeout_ms: u64,
    /// An explicit transaction idle (waiting for its client's next statement) for longer than
    /// this is rolled back: while it is open it holds the rows it changed.
    pub txn_idle_timeout_ms: u64,
    /// Concurrent SQLite read connections.
    pub read_connections: usize,
    /// Linearizable reads use the leader's lease (no quorum round while the lease is fresh;
    /// assumes clock rates differ by far less than the election timeout). `false`: a quorum
    /// round for every read index.
    pub lease_reads: bool,
    /// Snowflake IDs: the instant (RFC 3339) their timestamps count from.
    pub id_epoch: String,
    /// Snowflake IDs: the length of one timestamp tick (1 = Twitter, 10 = Sonyflake).
    pub id_time_unit_ms: u64,
    /// Snowflake IDs: field widths, adding up to 63 (the sign bit stays 0).
    pub id_timestamp_bits: u32,
    pub id_datacenter_bits: u32,
    pub id_worker_bits: u32,
    pub id_sequence_bits: u32,
    /// This node's datacenter id in its Snowflake IDs (the worker id is the node id).
    pub datacenter_id: u64,
    /// How far the clock may move back before this node refuses to issue Snowflake IDs.
    pub id_max_clock_rollback_ms: u64,
    /// PEM certificate chain for PostgreSQL TLS; with `pg_tls_key` (both or neither).
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key of `pg_tls_cert`.
    pub pg_tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL sessions that did not negotiate TLS (FATAL 28000), like a
    /// `hostssl`-only `pg_hba.conf`. Needs `pg_tls_cert`.
    pub pg_tls_required: bool,
    /// How PostgreSQL clients connecting from a loopback address authenticate: `trust`,
    /// `scram-sha-256`, `md5` (md5 for users stored as md5, else SCRAM) or `reject`.
    pub pg_auth_loopback: AuthMethod,
    /// How every other PostgreSQL client authenticates (same choices).
    pub pg_auth_remote: AuthMethod,
    /// PostgreSQL users and their password hashes (`[[pg_users]]`).
    pub pg_users: Vec<PgUser>,
    /// The read balancer's scheduler: rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, fo,
    /// ovf, twos (ipvsadm's names).
    pub dispatcher_scheduler: String,
    /// Read weights per node, `ID=WEIGHT,...` (0 drains a node); unlisted nodes weigh 1.
    pub dispatcher_weights: String,
    /// Where locality and hashing schedulers take a read's key: `first_table`, `client_addr`,
    /// `session`, `rule_key`; empty for the scheduler's own default.
    pub dispatcher_key_source: String,
    /// Effective read weights follow the load each node reports (in-flight reads, CPU, p99).
    pub dispatcher_dynamic_weights: bool,
    /// Tags per node id, which routing rules name (`[dispatcher_tags]`, `3 = ["reporting"]`).
    pub dispatcher_tags: BTreeMap<String, Vec<String>>,
    /// Routing rules, first match wins (`[[dispatcher_rules]]`). Like every dispatcher setting
    /// here, they hold until `PUT /v1/dispatcher` stores replicated settings, which then win.
    pub dispatcher_rules: Vec<crate::dispatch::routing::RoutingRule>,
    /// Health probes between nodes: every this many milliseconds ...
    pub health_interval_ms: u64,
    /// ... a node leaves the read pool after this many failures in a row ...
    pub health_fall: u32,
    /// ... and returns after this many successes in a row ...
    pub health_rise: u32,
    /// ... once it is at most this many log entries behind.
    pub health_max_lag_entries: u64,
    /// How stale (milliseconds behind the leader) a `bounded` read may be when its client
    /// names no bound (`SET phalanx.max_lag_ms`, the HTTP `max_lag_ms` field).
    pub read_max_lag_ms: u64,
}

/// One PostgreSQL user.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgUser {
    pub name: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` or `md5<32 hex digits>`
    /// (PostgreSQL's `pg_authid.rolpassword`; `phalanx pg-password` makes one). Never plaintext.
    pub password_hash: String,
}

impl std::fmt::Debug for PgUser {
    /// Leaves the hash out: an md5 hash is as good as the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            data: PathBuf::from("phalanx-data"),
            listen_pg: "127.0.0.1:5433".into(),
            listen_http: "127.0.0.1:8433".into(),
            listen_raft: "127.0.0.1:9433".into(),
            initial_cluster: None,
            join: None,
            no_bootstrap: false,
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            snapshot_every_entries: 20_000,
            log_entries_kept_after_snapshot: 1_000,
            max_request_bytes: 16 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            max_pg_connections: 100,
            write_timeout_ms: 10_000,
            read_timeout_ms: 5_000,
            txn_idle_timeout_ms: 60_000,
            read_connections: 4,
            lease_reads: true,
            id_epoch: "2024-01-01T00:00:00Z".into(),
            id_time_unit_ms: 1,
            id_timestamp_bits: 41,
            id_datacenter_bits: 5,
            id_worker_bits: 5,
            id_sequence_bits: 12,
            datacenter_id: 0,
            id_max_clock_rollback_ms: 10,
            pg_tls_cert: None,
            pg_tls_key: None,
            pg_tls_required: false,
            pg_auth_loopback: AuthMethod::Trust,
            pg_auth_remote: AuthMethod::ScramSha256,
            pg_users: Vec::new(),
            dispatcher_scheduler: "wlc".into(),
            dispatcher_weights: String::new(),
            dispatcher_key_source: String::new(),
            dispatcher_dynamic_weights: false,
            dispatcher_tags: BTreeMap::new(),
            dispatcher_rules: Vec::new(),
            health_interval_ms: 200,
            health_fall: 3,
            health_rise: 2,
            health_max_lag_entries: 1000,
            read_max_lag_ms: 1000,
        }
    }
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Loads defaults, then `file`, then `PHALANX_*` variables, then `flags` (only the keys
    /// they set).
    pub fn load(
        file: Option<&std::path::Path>,
        flags: impl Serialize,
    ) -> Result<NodeConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(NodeConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} not found",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: NodeConfig = figment
            // PHALANX_LOG (log filter) and PHALANX_CLUSTER (CLI target) are not node settings.
            .merge(Env::prefixed("PHALANX_").ignore(&["log", "cluster"]))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.id == 0 {
            return invalid("id must be at least 1".into());
        }
        if self.initial_cluster.is_some() && self.join.is_some() {
            return invalid(
                "give either initial_cluster (new cluster) or join (existing one), not both".into(),
            );
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms * 2 {
            return invalid(
                "election_timeout_min_ms must exceed twice heartbeat_interval_ms".into(),
            );
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return invalid("election_timeout_max_ms must exceed election_timeout_min_ms".into());
        }
        if self.snapshot_every_entries == 0 || self.read_connections == 0 {
            return invalid("snapshot_every_entries and read_connections must be positive".into());
        }
        if self.max_message_bytes == 0 || self.max_pg_connections == 0 {
            return invalid("max_message_bytes and max_pg_connections must be positive".into());
        }
        self.id_generator_settings()?;
        self.pg_auth_settings()?;
        if let Some(cluster) = &self.initial_cluster {
            let members = parse_initial_cluster(cluster)?;
            if !members.contains_key(&self.id) {
                return invalid(format!(
                    "initial_cluster does not list this node's id {}",
                    self.id
                ));
            }
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The Snowflake generator's layout and identity, validated now: the layout lasts at least
    /// 50 years from now, and the datacenter id and this node's worker id fit their fields.
    pub fn id_generator_settings(&self) -> Result<GeneratorSettings, ConfigError> {
        let layout = Layout::new(
            &self.id_epoch,
            self.id_time_unit_ms,
            [
                self.id_timestamp_bits,
                self.id_datacenter_bits,
                self.id_worker_bits,
                self.id_sequence_bits,
            ],
            SystemClock.now_unix_ms(),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let worker = ids::worker_for_node(self.id);
        if worker > layout.max_worker() {
            return Err(ConfigError::Invalid(format!(
                "node id {} is this node's Snowflake worker id and does not fit id_worker_bits = {} (at most {})",
                self.id,
                self.id_worker_bits,
                layout.max_worker()
            )));
        }
        if self.datacenter_id > layout.max_datacenter() {
            return Err(ConfigError::Invalid(format!(
                "datacenter_id {} does not fit id_datacenter_bits = {} (at most {})",
                self.datacenter_id,
                self.id_datacenter_bits,
                layout.max_datacenter()
            )));
        }
        Ok(GeneratorSettings {
            layout,
            datacenter: self.datacenter_id,
            worker,
            max_clock_rollback_ms: self.id_max_clock_rollback_ms,
        })
    }
}

impl NodeConfig {
    /// The PostgreSQL TLS files, checked now to be given together (their content is read by
    /// `node::start`).
    pub fn pg_tls_files(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (&self.pg_tls_cert, &self.pg_tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::Invalid(
                "give both pg_tls_cert and pg_tls_key, or neither".into(),
            )),
        }
    }

    /// The PostgreSQL authentication settings, validated now: TLS files given together (and
    /// present when required), every user named once with a well-formed hash.
    pub fn pg_auth_settings(&self) -> Result<AuthSettings, ConfigError> {
        let tls = self.pg_tls_files()?;
        if self.pg_tls_required && tls.is_none() {
            return Err(ConfigError::Invalid(
                "pg_tls_required needs pg_tls_cert and pg_tls_key".into(),
            ));
        }
        let mut users = BTreeMap::new();
        for user in &self.pg_users {
            if user.name.is_empty() {
                return Err(ConfigError::Invalid(
                    "a pg_users entry has an empty name".into(),
                ));
            }
            let hash = PasswordHash::parse(&user.password_hash).map_err(|e| {
                ConfigError::Invalid(format!("pg_users {:?}: password_hash: {e}", user.name))
            })?;
            if users.insert(user.name.clone(), hash).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "pg_users lists {:?} twice",
                    user.name
                )));
            }
        }
        Ok(AuthSettings {
            loopback: self.pg_auth_loopback,
            remote: self.pg_auth_remote,
            tls_required: self.pg_tls_required,
            users,
        })
    }
}

/// Parses `1=host:port,2=host:port` into raft addresses by node id.
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut members = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("initial_cluster item {item:?} is not ID=HOST:PORT"))
        })?;
        let id: NodeId = id.trim().parse().map_err(|_| {
            ConfigError::Invalid(format!("initial_cluster id {id:?} is not a number"))
        })?;
        if id == 0 || addr.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "initial_cluster item {item:?} is invalid"
            )));
        }
        if members.insert(id, addr.trim().to_owned()).is_some() {
            return Err(ConfigError::Invalid(format!(
                "initial_cluster lists node {id} twice"
            )));
        }
    }
    if members.is_empty() {
        return Err(ConfigError::Invalid("initial_cluster is empty".into()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_initial_cluster() {
        let m = parse_initial_cluster("1=127.0.0.1:1, 2=127.0.0.1:2").expect("valid");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&2], "127.0.0.1:2");
        assert!(parse_initial_cluster("1=a,1=b").is_err());
        assert!(parse_initial_cluster("x=a").is_err());
        assert!(parse_initial_cluster("").is_err());
    }

    #[test]
    fn flags_override_defaults_and_validation_runs() {
        #[derive(Serialize)]
        struct Flags {
            id: u64,
        }
        let c = NodeConfig::load(None, Flags { id: 7 }).expect("loads");
        assert_eq!(c.id, 7);
        assert!(NodeConfig::load(None, Flags { id: 0 }).is_err());
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    fn load(flags: serde_json::Value) -> Result<NodeConfig, ConfigError> {
        NodeConfig::load(None, flags)
    }

    #[test]
    fn the_id_layout_is_validated_at_load() {
        let settings = load(serde_json::json!({"id": 31, "datacenter_id": 31}))
            .expect("largest ids that fit")
            .id_generator_settings()
            .expect("settings");
        assert_eq!((settings.worker, settings.datacenter), (31, 31));
        let refused = [
            (serde_json::json!({"id": 32}), "does not fit id_worker_bits"),
            (
                serde_json::json!({"datacenter_id": 32}),
                "does not fit id_datacenter_bits",
            ),
            (serde_json::json!({"id_sequence_bits": 13}), "add up to 63"),
            (
                serde_json::json!({"id_timestamp_bits": 40, "id_sequence_bits": 13}),
                "less than 50 years",
            ),
            (serde_json::json!({"id_epoch": "2024-01-01"}), "RFC 3339"),
        ];
        for (flags, message) in refused {
            let error = load(flags.clone()).expect_err("refused").to_string();
            assert!(error.contains(message), "{flags}: {error}");
        }
        // More worker bits make room for larger node ids.
        let wide = serde_json::json!({"id": 40, "id_worker_bits": 6, "id_sequence_bits": 11});
        assert_eq!(
            load(wide)
                .expect("fits")
                .id_generator_settings()
                .expect("ok")
                .worker,
            40
        );
    }
}

#[cfg(test)]
mod pg_security_tests {
    use super::*;

    fn load(flags: serde_json::Value) -> Result<NodeConfig, ConfigError> {
        NodeConfig::load(None, flags)
    }

    #[test]
    fn tls_and_users_are_validated_at_load() {
        let refused = [
            (
                serde_json::json!({"pg_tls_cert": "c.pem"}),
                "both pg_tls_cert and pg_tls_key",
            ),
            (
                serde_json::json!({"pg_tls_required": true}),
                "pg_tls_required needs",
            ),
            (
                serde_json::json!({"pg_users": [{"name": "a", "password_hash": "secret"}]}),
                "plaintext passwords are not accepted",
            ),
            (
                serde_json::json!({"pg_users": [
                    {"name": "a", "password_hash": "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
                    {"name": "a", "password_hash": "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}),
                "twice",
            ),
            (
                serde_json::json!({"pg_auth_remote": "password"}),
                "unknown variant",
            ),
        ];
        for (flags, message) in refused {
            let error = load(flags.clone()).expect_err("refused").to_string();
            assert!(error.contains(message), "{flags}: {error}");
        }
        let config = load(serde_json::json!({
            "pg_auth_loopback": "md5",
            "pg_users": [{"name": "old", "password_hash": "md5AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}],
        }))
        .expect("valid");
        let settings = config.pg_auth_settings().expect("settings");
        assert_eq!(settings.loopback, AuthMethod::Md5);
        assert_eq!(settings.remote, AuthMethod::ScramSha256, "the default");
        assert!(settings.users.contains_key("old"));
        assert!(
            !format!("{config:?}").contains("AAAA"),
            "hashes stay out of Debug"
        );
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    /// The example file in the repository parses and holds exactly the defaults.
    #[test]
    fn example_file_matches_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("phalanx.example.toml");
        let config = NodeConfig::load(Some(&path), serde_json::json!({})).expect("example parses");
        assert_eq!(config, NodeConfig::default());
    }

    /// Routing rules, tags, the key source and dynamic weights come from the file too.
    #[test]
    fn dispatcher_rules_and_tags_load_from_the_file() {
        use crate::dispatch::routing::RuleTarget;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
dispatcher_scheduler = "sh"
dispatcher_key_source = "rule_key"
dispatcher_dynamic_weights = true
[dispatcher_tags]
3 = ["reporting"]
[[dispatcher_rules]]
name = "reports"
sql = '(?i)customer_id = (\d+)'
target = { tag = "reporting" }
[[dispatcher_rules]]
name = "fresh"
application_name = "billing"
target = "leader"
"#,
        )
        .expect("write");
        let config = NodeConfig::load(Some(&path), serde_json::json!({})).expect("loads");
        assert_eq!(config.dispatcher_key_source, "rule_key");
        assert!(config.dispatcher_dynamic_weights);
        assert_eq!(config.dispatcher_tags["3"], vec!["reporting".to_owned()]);
        let targets: Vec<_> = config
            .dispatcher_rules
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(
            targets,
            vec![RuleTarget::Tag("reporting".into()), RuleTarget::Leader]
        );
        assert_eq!(
            config.dispatcher_rules[0].sql.as_deref(),
            Some("(?i)customer_id = (\\d+)")
        );
        std::fs::write(
            &path,
            "[[dispatcher_rules]]\nname = \"x\"\ntarget = \"leader\"\ncolour = 1\n",
        )
        .expect("write");
        assert!(
            NodeConfig::load(Some(&path), serde_json::json!({})).is_err(),
            "a rule with an unknown key is refused"
        );
    }

    /// Flags win over the file.
    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "id = 3\nlisten_http = \"127.0.0.1:1\"\n").expect("write");
        let config = NodeConfig::load(Some(&path), serde_json::json!({"id": 5})).expect("loads");
        assert_eq!((config.id, config.listen_http.as_str()), (5, "127.0.0.1:1"));
        std::fs::write(&path, "colour = 1\n").expect("write");
        assert!(
            NodeConfig::load(Some(&path), serde_json::json!({})).is_err(),
            "unknown keys are refused"
        );
    }
}
