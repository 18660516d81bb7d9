//! openraft's state machine over the SQLite engine, and the snapshot directory.
//!
//! Applying entries is delegated to [`Engine::apply`] (see `storage::engine` for group commit).
//! A snapshot is a complete SQLite database file taken by an online backup; its Raft metadata
//! (last log id, membership) is read back from the copy's own `_phalanx_meta` table, so the file
//! and its position can never disagree. Snapshots live in `<data>/snapshots/` as
//! `snapshot-<index>.db` with a `.meta.json` beside it; the newest two are kept (an older one may
//! still be streaming to a follower).

use std::io;
use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};

use crate::raft::types::{CommandResponse, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::storage::engine::{ApplyItem, Engine};

/// Entries handed to the engine in one SQLite transaction at most.
const MAX_APPLY_CHUNK: usize = 4096;
/// Snapshots kept on disk.
const SNAPSHOTS_KEPT: usize = 2;

/// A snapshot on disk: a SQLite database file.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// The Raft state machine of one node.
#[derive(Clone)]
pub struct StateMachine {
    engine: Engine,
    snapshots: SnapshotDir,
}

impl StateMachine {
    pub fn new(engine: Engine, snapshot_dir: PathBuf) -> io::Result<StateMachine> {
        std::fs::create_dir_all(&snapshot_dir)?;
        Ok(StateMachine {
            engine,
            snapshots: SnapshotDir { dir: snapshot_dir },
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshots.dir
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.engine.applied_state().await?)
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut items = Vec::new();
        let mut responders = Vec::new();
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            items.push(ApplyItem::from(entry));
            if let Some(r) = responder {
                responders.push(r);
            }
            if items.len() >= MAX_APPLY_CHUNK {
                self.engine.apply(std::mem::take(&mut items)).await?;
                answer(&mut responders);
            }
        }
        if !items.is_empty() {
            self.engine.apply(items).await?;
        }
        answer(&mut responders);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            engine: self.engine.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let installed = self.snapshots.adopt(&snapshot.path, meta)?;
        self.engine.restore(installed.clone()).await?;
        let (applied, _) = self.engine.applied_state().await?;
        if applied != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot file is at {applied:?} but its metadata says {:?}",
                meta.last_log_id
            )));
        }
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.snapshots.latest()
    }
}

fn answer(responders: &mut Vec<openraft::storage::ApplyResponder<TypeConfig>>) {
    for responder in responders.drain(..) {
        responder.send(CommandResponse {});
    }
}

/// Builds a snapshot by copying the committed database.
pub struct SnapshotBuilder {
    engine: Engine,
    snapshots: SnapshotDir,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let building = self
            .snapshots
            .dir
            .join(format!("building-{}.db", rand::random::<u64>()));
        let (last_log_id, last_membership) = match self.engine.backup_to(building.clone()).await {
            Ok(state) => state,
            Err(e) => {
                let _ = std::fs::remove_file(&building);
                return Err(e.into());
            }
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let path = self.snapshots.adopt(&building, &meta)?;
        tracing::info!(?last_log_id, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        })
    }
}

/// The directory of finished snapshots.
#[derive(Clone)]
struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Moves a complete snapshot file into place with its metadata, and prunes old ones.
    fn adopt(&self, file: &Path, meta: &SnapshotMeta) -> io::Result<PathBuf> {
        // Already one of ours (openraft restoring the current snapshot at start-up): moving it
        // would leave its metadata pointing at a file that no longer exists.
        if let Some(stem) = file.file_stem().and_then(|s| s.to_str())
            && file.parent() == Some(self.dir.as_path())
            && self.dir.join(format!("{stem}.meta.json")).exists()
        {
            return Ok(file.to_path_buf());
        }
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let stem = format!("snapshot-{index:020}-{:016x}", rand::random::<u64>());
        let db = self.dir.join(format!("{stem}.db"));
        let meta_path = self.dir.join(format!("{stem}.meta.json"));
        std::fs::File::open(file)?.sync_all()?;
        let tmp_meta = self.dir.join(format!("{stem}.meta.tmp"));
        let encoded = serde_json::to_vec(meta).map_err(io::Error::other)?;
        std::fs::write(&tmp_meta, encoded)?;
        std::fs::File::open(&tmp_meta)?.sync_all()?;
        std::fs::rename(file, &db)?;
        // The metadata file appears last: a snapshot without it is incomplete and ignored.
        std::fs::rename(&tmp_meta, &meta_path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.prune(&stem)?;
        Ok(db)
    }

    /// Snapshot stems, oldest first.
    fn complete(&self) -> io::Result<Vec<String>> {
        let mut stems: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|name| name.strip_suffix(".meta.json").map(str::to_owned))
            .collect();
        stems.sort();
        Ok(stems)
    }

    fn latest(&self) -> io::Result<Option<Snapshot>> {
        let Some(stem) = self.complete()?.pop() else {
            return Ok(None);
        };
        let text = std::fs::read(self.dir.join(format!("{stem}.meta.json")))?;
        let meta: SnapshotMeta = serde_json::from_slice(&text).map_err(io::Error::other)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: SnapshotFile {
                path: self.dir.join(format!("{stem}.db")),
            },
        }))
    }

    /// Keeps `just_adopted` and the newest others, `SNAPSHOTS_KEPT` in all. Snapshots at the same
    /// index sort in random order, so without the exception a rebuild at an unchanged index could
    /// delete the file it is about to return.
    fn prune(&self, just_adopted: &str) -> io::Result<()> {
        let mut stems = self.complete()?;
        stems.retain(|stem| stem != just_adopted);
        let excess = stems.len().saturating_sub(SNAPSHOTS_KEPT - 1);
        for stem in &stems[..excess] {
            std::fs::remove_file(self.dir.join(format!("{stem}.meta.json")))?;
            let _ = std::fs::remove_file(self.dir.join(format!("{stem}.db")));
        }
        // Leftovers of interrupted builds or transfers.
        for entry in std::fs::read_dir(&self.dir)?.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".meta.tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}
