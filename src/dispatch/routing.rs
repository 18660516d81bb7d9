//! Routing rules: ordered rules that send matching autocommit reads to a set of nodes by tag,
//! to the leader, or through a named scheduler. A rule matches on any combination of a regular
//! expression over the SQL text, the tables it reads, the user and `application_name`; the
//! first rule that matches wins, and each counts its hits.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dispatch::scheduler::SchedulerKind;
use crate::raft::types::NodeId;

/// One rule as configured (in the dispatcher settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub name: String,
    /// A regular expression the SQL text must match (the `regex` crate's syntax; `(?i)` for
    /// case-insensitive). Its first capture group, if it has one, is the read's hash key under
    /// the `rule_key` key source (`customer_id = (\d+)`: one customer's reads to one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The statement must read at least one of these tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    pub target: RuleTarget,
}

/// Where a matching read goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    /// Only the nodes carrying this tag.
    Tag(String),
    /// Only the current leader.
    Leader,
    /// Any node, picked by this scheduler instead of the configured one.
    Scheduler(SchedulerKind),
}

/// What the read path knows about a read besides its SQL.
#[derive(Debug, Clone, Default)]
pub struct ReadContext {
    pub user: Option<String>,
    pub application_name: Option<String>,
    /// The session (for the `session` hash key).
    pub session: Option<u64>,
    /// The client's address (for the `client_addr` hash key).
    pub client_addr: Option<std::net::IpAddr>,
    /// The staleness bound of a `bounded` read (`None`: the node's default,
    /// [`crate::dispatch::Dispatcher::default_max_lag`]).
    pub max_lag: Option<std::time::Duration>,
}

/// A rule ready to match.
#[derive(Debug)]
pub struct CompiledRule {
    pub rule: RoutingRule,
    sql: Option<regex::Regex>,
}

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routing rule {name:?}: {reason}")]
pub struct RuleError {
    pub name: String,
    pub reason: String,
}

/// Compiles `rules`, checking names are unique and tags exist.
pub fn compile(
    rules: &[RoutingRule],
    tags: &BTreeMap<NodeId, BTreeSet<String>>,
) -> Result<Vec<CompiledRule>, RuleError> {
    let mut names = BTreeSet::new();
    rules
        .iter()
        .map(|rule| {
            let error = |reason: String| RuleError {
                name: rule.name.clone(),
                reason,
            };
            if rule.name.trim().is_empty() {
                return Err(error("a rule needs a name".into()));
            }
            if !names.insert(rule.name.clone()) {
                return Err(error("two rules have this name".into()));
            }
            if let RuleTarget::Tag(tag) = &rule.target
                && !tags.values().any(|t| t.contains(tag))
            {
                return Err(error(format!("no node is tagged {tag:?}")));
            }
            let sql = rule
                .sql
                .as_deref()
                .map(regex::Regex::new)
                .transpose()
                .map_err(|e| error(format!("invalid regular expression: {e}")))?;
            Ok(CompiledRule {
                rule: rule.clone(),
                sql,
            })
        })
        .collect()
}

impl CompiledRule {
    /// Whether the rule's SQL regex has a capture group, i.e. gives its reads a `rule_key`.
    pub fn has_key(&self) -> bool {
        self.sql.as_ref().is_some_and(|re| re.captures_len() > 1)
    }

    /// The text of the SQL regex's first capture group in `sql`, if the rule has one.
    pub fn key<'s>(&self, sql: &'s str) -> Option<&'s str> {
        self.sql
            .as_ref()?
            .captures(sql)?
            .get(1)
            .map(|group| group.as_str())
    }

    pub fn matches(&self, sql: &str, tables: &[String], context: &ReadContext) -> bool {
        let rule = &self.rule;
        self.sql.as_ref().is_none_or(|re| re.is_match(sql))
            && (rule.tables.is_empty()
                || rule
                    .tables
                    .iter()
                    .any(|t| tables.iter().any(|read| read.eq_ignore_ascii_case(t))))
            && rule
                .user
                .as_ref()
                .is_none_or(|u| context.user.as_deref() == Some(u.as_str()))
            && rule
                .application_name
                .as_ref()
                .is_none_or(|a| context.application_name.as_deref() == Some(a.as_str()))
    }
}

/// The tables a statement reads, for matching: every name after `FROM` or `JOIN` (unquoted,
/// lower-cased, schema dropped). A heuristic: a wrong guess only misroutes a read.
pub fn tables_read(sql: &str) -> Vec<String> {
    let mut tables = Vec::new();
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .peekable();
    while let Some(word) = words.next() {
        if (word.eq_ignore_ascii_case("from") || word.eq_ignore_ascii_case("join"))
            && let Some(next) = words.peek()
        {
            let name = next.rsplit('.').next().unwrap_or(next);
            let name = name.trim_matches('"').to_ascii_lowercase();
            if !name.is_empty() && !name.eq_ignore_ascii_case("select") {
                tables.push(name);
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_first_capture_group_of_the_sql_regex_is_the_rule_key() {
        let rule = |sql: &str| RoutingRule {
            name: sql.into(),
            sql: Some(sql.into()),
            tables: Vec::new(),
            user: None,
            application_name: None,
            target: RuleTarget::Leader,
        };
        let compiled = compile(
            &[rule(r"customer_id = (\d+)"), rule("orders")],
            &BTreeMap::new(),
        )
        .expect("compile");
        let sql = "SELECT * FROM orders WHERE customer_id = 42";
        assert_eq!(compiled[0].key(sql), Some("42"));
        assert_eq!(compiled[1].key(sql), None, "no capture group");
        assert_eq!(compiled[0].key("SELECT 1"), None, "no match");
    }
    use super::*;

    fn rule(json: &str) -> RoutingRule {
        serde_json::from_str(json).expect("rule")
    }

    #[test]
    fn rules_match_on_every_field_and_compile_checks_them() {
        let tags = BTreeMap::from([(3, BTreeSet::from(["reporting".to_owned()]))]);
        let rules = compile(
            &[
                rule(r#"{"name":"reports","sql":"(?i)\\bsum\\(","target":{"tag":"reporting"}}"#),
                rule(r#"{"name":"orders","tables":["orders"],"user":"bi","target":"leader"}"#),
                rule(r#"{"name":"app","application_name":"dash","target":{"scheduler":"rr"}}"#),
            ],
            &tags,
        )
        .expect("compiles");
        let bi = ReadContext {
            user: Some("bi".into()),
            ..ReadContext::default()
        };
        let sql = "SELECT SUM(x) FROM t";
        assert!(rules[0].matches(sql, &tables_read(sql), &ReadContext::default()));
        let sql = "SELECT * FROM public.orders o JOIN items i ON o.id = i.order_id";
        assert_eq!(tables_read(sql), ["orders", "items"]);
        assert!(rules[1].matches(sql, &tables_read(sql), &bi));
        assert!(!rules[1].matches(sql, &tables_read(sql), &ReadContext::default()));
        let dash = ReadContext {
            application_name: Some("dash".into()),
            ..ReadContext::default()
        };
        assert!(rules[2].matches("SELECT 1", &[], &dash));

        for bad in [
            r#"{"name":"x","sql":"(","target":"leader"}"#,
            r#"{"name":"x","target":{"tag":"nowhere"}}"#,
            r#"{"name":"","target":"leader"}"#,
        ] {
            assert!(compile(&[rule(bad)], &tags).is_err(), "{bad}");
        }
        let twice = [
            rule(r#"{"name":"a","target":"leader"}"#),
            rule(r#"{"name":"a","target":"leader"}"#),
        ];
        assert!(compile(&twice, &tags).is_err());
    }
}
