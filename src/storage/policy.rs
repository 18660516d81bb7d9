//! What client SQL may do, enforced by SQLite's authorizer at prepare time (so no spelling of a
//! statement gets around it):
//!
//! - On the write connection, while a client request runs: no transaction control (each request
//!   is exactly one transaction), no ATTACH/DETACH, no PRAGMA, no TEMP objects (they would live
//!   on in the leader's connection and, replayed, in every follower's), and no change to
//!   Phalanx's own bookkeeping table. Internal work (applying entries, bookkeeping) runs with the
//!   policy off.
//! - On read connections, always: reading only (SELECT, functions, recursive CTEs), except
//!   for rows of the attached catalog databases (`crate::storage::catalog`), which the engine
//!   rebuilds there; a client statement that writes anything is refused before it runs
//!   anyway, since only read-only statements are queried. On the write connection, client SQL
//!   may not touch the catalog databases.
//!
//! Schema introspection pragmas (`table_info` and kin) stay allowed on both: they only read,
//! and SQLite's session extension itself prepares `PRAGMA table_xinfo` through this authorizer
//! to learn a table's columns — denying it would make the session silently record nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::storage::meta::META_TABLE;

/// Switch for the write connection's policy: on only while client SQL is prepared and run.
#[derive(Clone, Default)]
pub struct ClientSqlGuard {
    active: Arc<AtomicBool>,
    /// Tables a client statement prepared with the policy on would drop (seen by the
    /// authorizer), so the engine can capture what dropping them cascades to.
    dropped_tables: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ClientSqlGuard {
    /// Runs `f` (which prepares and runs client SQL) with the policy on. Session calls
    /// (which run SQLite's own internal SQL, e.g. `SAVEPOINT changeset`) must stay outside.
    pub fn while_active<T>(&self, f: impl FnOnce() -> T) -> T {
        self.active.store(true, Ordering::SeqCst);
        let result = f();
        self.active.store(false, Ordering::SeqCst);
        result
    }

    /// The authorizer for the write connection.
    pub fn authorizer(
        &self,
    ) -> impl for<'r> FnMut(AuthContext<'r>) -> Authorization + Send + 'static {
        let active = self.active.clone();
        let dropped_tables = self.dropped_tables.clone();
        move |ctx| {
            if !active.load(Ordering::SeqCst) {
                return Authorization::Allow;
            }
            let decision = write_policy(&ctx);
            if decision == Authorization::Allow
                && let AuthAction::DropTable { table_name } = ctx.action
                && ctx.database_name == Some("main")
                && let Ok(mut tables) = dropped_tables.lock()
            {
                tables.push(table_name.to_owned());
            }
            decision
        }
    }

    /// Takes the tables seen dropped since the last call. The std mutex is only held to swap
    /// the list, never across an await (the writer thread is synchronous).
    pub fn take_dropped_tables(&self) -> Vec<String> {
        self.dropped_tables
            .lock()
            .map(|mut tables| std::mem::take(&mut *tables))
            .unwrap_or_default()
    }
}

/// Pragmas that only read the schema.
const INTROSPECTION_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

fn is_introspection(pragma: &str) -> bool {
    INTROSPECTION_PRAGMAS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(pragma))
}

fn touches_meta(table: &str) -> bool {
    table.eq_ignore_ascii_case(META_TABLE)
}

fn in_catalog(ctx: &AuthContext<'_>) -> bool {
    ctx.database_name
        .is_some_and(|db| crate::storage::catalog::SCHEMAS.contains(&db))
}

fn write_policy(ctx: &AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Pragma { pragma_name, .. } if is_introspection(pragma_name) => {
            Authorization::Allow
        }
        AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::Pragma { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropTempView { .. } => Authorization::Deny,
        AuthAction::Insert { .. }
        | AuthAction::Delete { .. }
        | AuthAction::Update { .. }
        | AuthAction::DropTable { .. }
        | AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::AlterTable { .. }
            if in_catalog(ctx) =>
        {
            Authorization::Deny
        }
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::Update { table_name, .. }
            if touches_meta(table_name) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// The authorizer for read connections: reading only.
pub fn read_only_policy(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Pragma { pragma_name, .. } if is_introspection(pragma_name) => {
            Authorization::Allow
        }
        // The catalog rebuild's check whether the schema changed; reading it is harmless.
        AuthAction::Pragma {
            pragma_name,
            pragma_value: None,
        } if pragma_name.eq_ignore_ascii_case("schema_version") => Authorization::Allow,
        AuthAction::Insert { .. } | AuthAction::Delete { .. } if in_catalog(&ctx) => {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}
