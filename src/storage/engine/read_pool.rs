//! The pool of read connections, and where a read runs.
//!
//! A read first tries the async worker that received it ([`ReadPool::try_inline`]): most
//! reads are point lookups of a few microseconds, and handing one to a blocking thread and
//! back costs more than the read itself (two thread wake-ups). SQLite's progress handler stops
//! an inline read that runs past [`INLINE_BUDGET`]; it is then run again, from the start, on
//! the blocking pool ([`ReadPool::with_connection`]), so a long read never holds up the async
//! workers for longer than the budget. Reads change nothing, so running one twice is harmless.
//! Likewise an inline read that finds the database busy (rare in WAL mode) does not wait on
//! the async worker: it moves to the blocking pool, where the busy handler waits up to
//! [`BUSY_WAIT`].

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::storage::catalog;
use crate::storage::error::EngineError;
use crate::storage::pg_functions;
use crate::storage::policy;

/// How long a read may run on an async worker before it is stopped and moved to the blocking
/// pool.
pub const INLINE_BUDGET: Duration = Duration::from_micros(200);
/// SQLite virtual-machine steps between two looks at the clock (a few microseconds).
const STEPS_BETWEEN_CHECKS: i32 = 1000;

/// How long a read on the blocking pool waits for a busy database.
const BUSY_WAIT: Duration = Duration::from_secs(5);

thread_local! {
    /// Whether this thread is running an inline read, and whether it found the database busy.
    static INLINE: Cell<bool> = const { Cell::new(false) };
    static BUSY_INLINE: Cell<bool> = const { Cell::new(false) };
}

/// SQLite's busy handler for read connections: an inline read gives up at once (and moves to
/// the blocking pool); any other waits a millisecond at a time, up to [`BUSY_WAIT`].
fn on_busy(attempt: i32) -> bool {
    if INLINE.with(Cell::get) {
        BUSY_INLINE.with(|busy| busy.set(true));
        return false;
    }
    let waited = Duration::from_millis(u64::try_from(attempt).unwrap_or(0));
    if waited >= BUSY_WAIT {
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    true
}

/// The clock the inline deadlines count from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A read connection and the deadline its progress handler enforces.
pub struct Reader {
    pub conn: Connection,
    deadline: Arc<Deadline>,
}

/// Nanoseconds after [`EPOCH`] at which the running statement is stopped (0: never), and
/// whether it was.
#[derive(Default)]
struct Deadline {
    at_nanos: AtomicU64,
    stopped: AtomicBool,
}

impl Deadline {
    fn arm(&self, budget: Duration) {
        let at = EPOCH.elapsed() + budget;
        self.stopped.store(false, Ordering::Relaxed);
        self.at_nanos.store(
            u64::try_from(at.as_nanos()).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
    }

    /// Disarms the deadline; whether it stopped the statement.
    fn disarm(&self) -> bool {
        self.at_nanos.store(0, Ordering::Relaxed);
        self.stopped.load(Ordering::Relaxed)
    }

    /// The progress handler: `true` interrupts the statement.
    fn passed(&self) -> bool {
        let at = self.at_nanos.load(Ordering::Relaxed);
        if at == 0 || u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX) < at {
            return false;
        }
        self.stopped.store(true, Ordering::Relaxed);
        true
    }
}

/// A fixed set of read-only connections. Reads wait for a free connection (back-pressure).
pub struct ReadPool {
    pub connections: Mutex<Vec<Reader>>,
    /// One per pooled connection; a reader's permit travels with its connection into the
    /// blocking task, so a caller that gives up waiting (a cancelled RPC) cannot free a permit
    /// while its connection is still in use.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub fn open(path: &Path, size: usize, cache_capacity: usize) -> Result<ReadPool, EngineError> {
        let mut connections = Vec::with_capacity(size);
        for _ in 0..size {
            let mut conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.set_prepared_statement_cache_capacity(cache_capacity);
            // No `query_only`: the catalog rebuild writes the attached in-memory databases.
            // The authorizer keeps everything else read-only, and `run_query` refuses any
            // statement that is not.
            catalog::attach(&conn)?;
            conn.busy_handler(Some(on_busy))?;
            pg_functions::register(&conn)?;
            conn.authorizer(Some(policy::read_only_policy))?;
            let deadline = Arc::new(Deadline::default());
            let handler = deadline.clone();
            conn.progress_handler(STEPS_BETWEEN_CHECKS, Some(move || handler.passed()))?;
            connections.push(Reader { conn, deadline });
        }
        Ok(ReadPool {
            connections: Mutex::new(connections),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `f` here, on the caller's thread, if a connection is free at once and `f` finishes
    /// within [`INLINE_BUDGET`]; `None` otherwise (a statement stopped at the budget has had no
    /// effect, and its partial result is dropped).
    pub fn try_inline<T>(&self, f: impl FnOnce(&Connection) -> T) -> Option<T> {
        let permit = self.permits.try_acquire().ok()?;
        let reader = self.connections.lock().ok()?.pop()?;
        reader.deadline.arm(INLINE_BUDGET);
        INLINE.with(|inline| inline.set(true));
        let result = f(&reader.conn);
        INLINE.with(|inline| inline.set(false));
        let busy = BUSY_INLINE.with(|busy| busy.replace(false));
        let stopped = reader.deadline.disarm() || busy;
        if let Ok(mut connections) = self.connections.lock() {
            connections.push(reader);
        }
        drop(permit);
        (!stopped).then_some(result)
    }

    /// Runs `f` on a pooled connection on the blocking thread pool, without a time limit. The
    /// mutex is held only to take and return a connection, never across an await.
    pub async fn with_connection<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Closed)?;
        let reader = self
            .connections
            .lock()
            .map_err(|_| EngineError::Closed)?
            .pop()
            .ok_or(EngineError::Closed)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&reader.conn);
            if let Ok(mut connections) = pool.connections.lock() {
                connections.push(reader);
            }
            // Only now may another reader take a connection.
            drop(permit);
            result
        })
        .await
        .map_err(|e| EngineError::Io(std::io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &Path) -> ReadPool {
        let path = dir.join("db.sqlite");
        let conn = Connection::open(&path).expect("opens");
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER);")
            .expect("schema");
        ReadPool::open(&path, 1, 16).expect("pool opens")
    }

    fn count(conn: &Connection, sql: &str) -> rusqlite::Result<i64> {
        conn.query_row(sql, [], |row| row.get(0))
    }

    #[test]
    fn a_short_read_runs_inline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(dir.path());
        let answer = pool.try_inline(|conn| count(conn, "SELECT count(*) FROM t"));
        assert_eq!(answer.map(|r| r.ok()), Some(Some(0)));
    }

    #[tokio::test]
    async fn a_long_read_is_stopped_inline_and_completes_on_the_blocking_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = Arc::new(pool(dir.path()));
        // Tens of milliseconds of work: far past the inline budget.
        let long = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                    WHERE i < 2000000) SELECT count(*) FROM n";
        assert!(pool.try_inline(|conn| count(conn, long)).is_none());
        let full = pool
            .with_connection(move |conn| count(conn, long))
            .await
            .expect("pool");
        assert_eq!(full.ok(), Some(2_000_000));
        // The connection went back to the pool, its deadline disarmed.
        let again = pool.try_inline(|conn| count(conn, "SELECT count(*) FROM t"));
        assert_eq!(again.map(|r| r.ok()), Some(Some(0)));
    }
}
