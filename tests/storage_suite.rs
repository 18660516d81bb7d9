//! openraft's storage conformance suite, run against the stores a node really uses: the durable
//! [`LogStore`] and the SQLite [`StateMachine`] (engine plus snapshot directory), each case on
//! fresh files in its own temporary directory.
//!
//! The suite builds only blank and membership entries (it cannot construct an application
//! `Command`), so it proves the Raft bookkeeping: applied log id and membership, snapshot
//! metadata, install and current snapshot. `normal_entries_survive_snapshot_transfer` below
//! covers what it leaves out: a `Command::Write` carrying a real changeset, applied, snapshotted
//! and installed on another state machine; `rebuilt_snapshot_at_same_index_is_kept` pins a
//! pruning bug the same run turned up.

use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use openraft::{EntryPayload, StorageError};
use tempfile::TempDir;

use phalanx::raft::log_store::{LogStore, LogStoreOptions};
use phalanx::raft::state_machine::StateMachine;
use phalanx::raft::types::{Command, Entry, LogId, TypeConfig};
use phalanx::storage::engine::{Engine, EngineOptions};
use phalanx::storage::request::{SqlValue, Statement};

/// Builds one node's real stores on a fresh temporary directory laid out like a data directory.
/// The directory is the suite's guard: it outlives the stores of the case that uses it.
struct NodeStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for NodeStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let to_storage_error = |e: &dyn std::error::Error| {
            StorageError::read(TypeConfig::err_from_error(&std::io::Error::other(
                e.to_string(),
            )))
        };
        let dir = TempDir::new().map_err(|e| to_storage_error(&e))?;
        let state_machine = open_state_machine(&dir).map_err(|e| to_storage_error(&*e))?;
        let (log, _report) =
            LogStore::open(dir.path().join("raft-log"), LogStoreOptions::default())
                .map_err(|e| to_storage_error(&e))?;
        Ok((dir, log, state_machine))
    }
}

fn open_state_machine(dir: &TempDir) -> Result<StateMachine, Box<dyn std::error::Error>> {
    let engine = Engine::open(EngineOptions {
        db_path: dir.path().join("db.sqlite"),
        node_id: 1,
        read_connections: 2,
        ids: None,
    })?;
    Ok(StateMachine::new(engine, dir.path().join("snapshots"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_and_state_machine_pass_openraft_storage_suite() {
    Suite::test_all(NodeStores).await.expect("storage suite");
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(term, 1),
        index,
    )
}

fn statement(sql: &str) -> Statement {
    Statement {
        sql: sql.into(),
        params: Vec::new(),
    }
}

/// A write executed on one engine (the "leader"), applied as a normal entry on another state
/// machine, is in that state machine's snapshot, and installing the snapshot on a third state
/// machine yields the same rows and the same applied log id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_entries_survive_snapshot_transfer() {
    let leader_dir = TempDir::new().expect("temp dir");
    let leader = open_state_machine(&leader_dir).expect("leader");
    let executed = leader
        .engine()
        .execute(vec![vec![
            statement("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL)"),
            statement("INSERT INTO t(name) VALUES ('alpha'), ('beta')"),
        ]])
        .await
        .expect("execute");
    assert!(
        executed.results.iter().all(Result::is_ok),
        "the write failed: {:?}",
        executed.results
    );
    let command = Command::Write {
        proposal: executed.proposal.expect("the batch changed something"),
        parts: executed.parts,
    };

    let source_dir = TempDir::new().expect("temp dir");
    let mut source = open_state_machine(&source_dir).expect("source");
    let mut normal = Entry::new_blank(log_id(2, 7));
    normal.payload = EntryPayload::Normal(command);
    source
        .apply(futures::stream::iter([Ok((normal, None))]))
        .await
        .expect("apply normal entry");
    let snapshot = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, 7)));

    let target_dir = TempDir::new().expect("temp dir");
    let mut target = open_state_machine(&target_dir).expect("target");
    let current = source
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot was built");
    target
        .install_snapshot(&current.meta, current.snapshot)
        .await
        .expect("install snapshot");
    let (applied, _) = target.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(2, 7)));
    let rows = target
        .engine()
        .query(statement("SELECT name FROM t ORDER BY id"))
        .await
        .expect("query")
        .rows;
    assert_eq!(
        rows,
        vec![
            vec![SqlValue::Text("alpha".into())],
            vec![SqlValue::Text("beta".into())]
        ]
    );
}

/// Rebuilding a snapshot at an unchanged applied index (so the new snapshot and the ones kept on
/// disk share an index) still returns a file that exists: pruning never removes the snapshot it
/// has just put in place. Each rebuild used to have a two-in-three chance of losing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_snapshot_at_same_index_is_kept() {
    let dir = TempDir::new().expect("temp dir");
    let mut state_machine = open_state_machine(&dir).expect("state machine");
    state_machine
        .apply(futures::stream::iter([Ok((
            Entry::new_blank(log_id(1, 3)),
            None,
        ))]))
        .await
        .expect("apply blank entry");
    for rebuild in 0..20 {
        let snapshot = state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build snapshot");
        assert!(
            snapshot.snapshot.path.exists(),
            "rebuild {rebuild} returned a snapshot whose file was pruned"
        );
        let current = state_machine
            .get_current_snapshot()
            .await
            .expect("current snapshot")
            .expect("a snapshot was built");
        assert!(current.snapshot.path.exists());
        assert_eq!(current.meta, snapshot.meta);
    }
}
