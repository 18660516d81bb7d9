//! What the catalog shows that the SQLite schema does not hold: the server's roles (the
//! built-in `postgres` and every configured `[[pg_users]]` name) and its settings with their
//! defaults (`pg_settings`). A node sets them once at start ([`set`]) from its configuration and
//! the PostgreSQL front end's settings; until then the catalog shows `postgres` alone and no
//! settings (a bare engine, in tests).

use std::sync::OnceLock;

use super::build::SUPERUSER;

/// Roles after `postgres` get OIDs from here, clear of relation OIDs (16384 + 2 × rowid).
const FIRST_ROLE_OID: i64 = 1 << 30;

/// One row of `pg_settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    /// The default, as `SHOW` prints it.
    pub value: String,
    pub category: &'static str,
    pub description: String,
    /// PostgreSQL's `context`: `user` (a session may SET it), `internal` (read-only), ...
    pub context: &'static str,
}

impl Setting {
    /// PostgreSQL's `vartype`, from the value's form.
    pub fn vartype(&self) -> &'static str {
        if self.value == "on" || self.value == "off" {
            "bool"
        } else if !self.value.is_empty() && self.value.parse::<i64>().is_ok() {
            "integer"
        } else {
            "string"
        }
    }
}

/// The server's roles (besides `postgres`) and settings.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    pub roles: Vec<String>,
    pub settings: Vec<Setting>,
}

static FACTS: OnceLock<ServerFacts> = OnceLock::new();

/// Records the facts; the first call wins (one node per process).
pub fn set(facts: ServerFacts) {
    let _ = FACTS.set(facts);
}

/// (oid, name) of every role: `postgres` first, then the configured ones.
pub fn roles() -> Vec<(i64, String)> {
    let mut roles = vec![(SUPERUSER, "postgres".to_owned())];
    let configured = FACTS.get().map(|f| f.roles.as_slice()).unwrap_or_default();
    for (i, name) in configured.iter().enumerate() {
        if roles.iter().any(|(_, known)| known == name) {
            continue;
        }
        roles.push((FIRST_ROLE_OID + i as i64, name.clone()));
    }
    roles
}

pub fn settings() -> Vec<Setting> {
    FACTS.get().map(|f| f.settings.clone()).unwrap_or_default()
}
