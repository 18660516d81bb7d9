//! The durable Raft log: append-only segment files on disk, every live entry in memory.
//!
//! [`LogStore`] implements openraft's [`RaftLogStorage`] and hands out [`LogReader`]s
//! ([`RaftLogReader`]) to the replication tasks. It owns one directory, `<data>/raft-log/`:
//!
//! ```text
//! raft-log/
//!   LOCK                        flock'ed while a LogStore is open: one owner per directory
//!   vote                        the last saved vote, one framed record, replaced atomically
//!   00000000000000000007.seg    sealed segment (never written again)
//!   00000000000000000008.seg    active segment: the only file records are appended to
//! ```
//!
//! # Format
//!
//! A segment is a sequence of records, each framed as
//! `[u32 LE payload length][u32 LE CRC-32 of the payload][payload]`. The payload is a
//! postcard-encoded `Record`: `Entry`, `TruncateAfter(Option<LogId>)`, `Purge(LogId)` or
//! `Committed(Option<LogId>)`. A payload is never empty and never longer than
//! [`MAX_RECORD_PAYLOAD_BYTES`]. Segment names are a 20-digit sequence number that only grows
//! and is never reused; deleting old segments leaves gaps, which are fine. The `vote` file
//! holds one record framed the same way whose payload is the postcard-encoded vote; it is
//! replaced by writing `vote.tmp`, fsync, rename, fsync of the directory.
//!
//! The log is what replaying every record, oldest segment first, produces: `Entry` inserts,
//! `TruncateAfter` drops every entry after the given id, `Purge` raises the purge point and drops
//! every entry up to it, `Committed` overwrites the committed id.
//!
//! # Invariants
//!
//! - Only the writer thread writes files, in exactly the order the trait methods were called.
//! - The in-memory log equals the replay of every record submitted so far; the files hold the
//!   replay of every record flushed so far.
//! - Entries are contiguous: an append must start right after the last entry (or after the purge
//!   point when there is none); anything else is refused, never written. Replay checks the same,
//!   except that after old segments were deleted the first surviving entry may lie above the
//!   purge point restated in its segment's header: the newer `Purge` record follows.
//! - A sealed segment was fdatasync'ed before its successor was created, and the successor's
//!   creation (file, header, directory entry) was synced before any record went into it. So the
//!   only damage a crash can leave is at the tail of the *last* segment.
//! - Every segment begins with a `Purge` record carrying the current purge point and a
//!   `Committed` record carrying the current committed id (each only if set), and opening the
//!   store restates both in the active segment (its header may have been torn), so deleting old
//!   segments never loses either.
//! - Segments are deleted oldest first, only while every entry they ever held is at or below the
//!   purge point, and never the active one. Deleting only a prefix cannot resurrect truncated
//!   entries, since a `TruncateAfter` only affects entries written before it.
//!
//! # Recovery ([`LogStore::open`])
//!
//! Segments are replayed in sequence order. A record that is short (torn), has a zero or
//! oversized length, or fails its CRC is *damage*. Damage in the last segment is a torn write
//! that was never acknowledged: the file is truncated at the start of that record and synced,
//! a `warn!` says how many bytes were dropped at which offset, nothing after it is replayed,
//! and [`OpenReport::tail_repair`] describes it. Damage in a sealed segment means the disk lost
//! acknowledged data, and opening fails with [`LogStoreError::Corruption`] naming the file and
//! offset. A record whose CRC is valid but does not decode, or an entry out of sequence, is a
//! software bug and also refuses to open, wherever it is. If intact records follow the damage
//! in the last segment, it was not a torn write: they are dropped all the same (nothing after
//! damage is trusted), but the report counts them and an `error!` is logged as well.
//!
//! # Group commit
//!
//! One dedicated writer thread (`raft-log-writer`) owns the active segment. The trait methods
//! update the in-memory log at once (so an appended entry is readable when `append` returns),
//! then send a command over a bounded queue. The writer blocks for one command, takes every
//! other command already queued (up to [`LogStoreOptions::queue_capacity`]), writes them all,
//! issues one `fdatasync`, and only then completes the `IOFlushed` callbacks and replies of the
//! whole batch. So appends that openraft issues before the first flush completes share that
//! flush. `save_vote` first flushes what precedes it, then replaces the vote file; it returns
//! only after fsync. `truncate_after` and `purge` return once their record is durable; segment
//! deletion happens after the `Purge` record is durable. `save_committed` does not wait: its
//! record is durable with the next flush, which the writer issues at the end of the batch.
//!
//! After any write or sync error the writer stops writing for good (a failed fsync cannot be
//! retried safely): every pending and later operation fails, and the node must restart, which
//! recovers from what is on disk.
//!
//! # Limits
//!
//! - The queue holds at most `queue_capacity` commands; when it is full the calling Raft task
//!   waits (back-pressure), it is never dropped.
//! - A record payload is at most [`MAX_RECORD_PAYLOAD_BYTES`]; a larger entry is refused with
//!   `InvalidInput`.
//! - `limited_get_log_entries` returns at most [`LogStoreOptions::max_entries_per_read`] entries.
//! - Memory holds every live entry: it is bounded by how far the snapshot policy lets the log
//!   grow before openraft purges it.
//!
//! # Left out
//!
//! No preallocation or direct I/O, no whole-segment checksums, no compaction inside a segment:
//! a segment is deleted whole once purged. Opening does blocking file I/O; call it before the
//! Raft node starts, or from `spawn_blocking`.
//!
//! # Shutdown
//!
//! Take a [`LogStoreHandle`] ([`LogStore::handle`]) before moving the store into openraft.
//! Dropping the [`LogStore`] (openraft does so when the Raft core stops) closes the queue; the
//! writer finishes and syncs what is queued, closes its files, releases `LOCK` and exits.
//! [`LogStoreHandle::closed`] resolves then; wait for it before reopening the directory.
//! [`LogReader`]s do not keep the writer alive.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::raft::types::{Entry, LogId, TypeConfig, Vote};

/// The largest record payload accepted on append and believed on recovery. A length field above
/// this is treated as damage rather than trusted for an allocation.
pub const MAX_RECORD_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Length and CRC, both `u32` little-endian.
const RECORD_HEADER_BYTES: usize = 8;
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_NAME_DIGITS: usize = 20;
const VOTE_FILE: &str = "vote";
const VOTE_TMP_FILE: &str = "vote.tmp";
const LOCK_FILE: &str = "LOCK";
const WRITER_THREAD_NAME: &str = "raft-log-writer";

/// Tuning for a [`LogStore`]; [`Default`] is what production uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStoreOptions {
    /// The active segment is sealed and a new one started once it reaches this size. One
    /// `append` call is never split across segments, so a segment can exceed this by one append.
    pub segment_max_bytes: u64,
    /// Capacity of the writer's command queue, and the most commands one flush covers. When the
    /// queue is full, `append` and friends wait.
    pub queue_capacity: usize,
    /// The most entries one `limited_get_log_entries` call returns.
    pub max_entries_per_read: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        Self {
            segment_max_bytes: 64 * 1024 * 1024,
            queue_capacity: 1024,
            max_entries_per_read: 4096,
        }
    }
}

impl LogStoreOptions {
    fn validate(&self) -> Result<(), LogStoreError> {
        let invalid = |field, reason| Err(LogStoreError::InvalidOptions { field, reason });
        if self.segment_max_bytes == 0 {
            return invalid("segment_max_bytes", "must be positive");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be positive");
        }
        if self.max_entries_per_read == 0 {
            return invalid("max_entries_per_read", "must be positive");
        }
        Ok(())
    }
}

/// Why [`LogStore::open`] failed. Every variant means the node must not start.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// Another open `LogStore`, in this process or another, owns the directory.
    #[error("raft log directory {} is in use (lock held on {})", dir.display(), dir.join(LOCK_FILE).display())]
    Locked { dir: PathBuf },
    /// The options cannot work; fix the configuration.
    #[error("invalid raft log option {field}: {reason}")]
    InvalidOptions {
        field: &'static str,
        reason: &'static str,
    },
    /// The file system refused an operation; the data on disk is not known to be damaged.
    #[error("raft log I/O error while {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Acknowledged data is damaged (or was written by a buggy build). Needs an operator: restore
    /// this node from a peer rather than guess.
    #[error("raft log corrupt: {} at byte {offset}: {damage}", path.display())]
    Corruption {
        path: PathBuf,
        offset: u64,
        #[source]
        damage: Damage,
    },
}

impl LogStoreError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        LogStoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn corruption(path: &Path, offset: usize, damage: Damage) -> Self {
        LogStoreError::Corruption {
            path: path.to_path_buf(),
            offset: offset as u64,
            damage,
        }
    }
}

/// What is wrong with the bytes at some offset of a log file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// Fewer than the 8 header bytes remain.
    #[error("record header cut short: {available_bytes} of {RECORD_HEADER_BYTES} bytes present")]
    TornHeader { available_bytes: u64 },
    /// The header promises more payload than the file holds.
    #[error("record payload cut short: {available_bytes} of {length_bytes} bytes present")]
    TornPayload {
        length_bytes: u64,
        available_bytes: u64,
    },
    /// A zero length: never written by the store, typically zero-filled space after a crash.
    #[error("record length is zero (unwritten or zero-filled space)")]
    ZeroLength,
    /// The length field is beyond [`MAX_RECORD_PAYLOAD_BYTES`].
    #[error("record length {length_bytes} exceeds the limit of {MAX_RECORD_PAYLOAD_BYTES} bytes")]
    LengthTooLarge { length_bytes: u64 },
    /// The payload does not match its CRC.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The CRC is valid but the payload does not decode: a format or software bug, never a crash.
    #[error("payload passes its checksum but does not decode: {0}")]
    Undecodable(#[source] postcard::Error),
    /// The payload decodes but leaves bytes over.
    #[error("{extra_bytes} unexpected bytes after the record")]
    TrailingBytes { extra_bytes: u64 },
    /// An entry that would leave a hole in (or overwrite) the log.
    #[error(transparent)]
    Discontinuity(#[from] Discontinuity),
}

impl Damage {
    /// Damage a torn write can leave; anything else refuses to open even in the last segment.
    fn is_torn_write(&self) -> bool {
        matches!(
            self,
            Damage::TornHeader { .. }
                | Damage::TornPayload { .. }
                | Damage::ZeroLength
                | Damage::LengthTooLarge { .. }
                | Damage::ChecksumMismatch { .. }
        )
    }
}

/// An entry index that does not follow the log's last entry (or purge point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("entry {found} is out of sequence: the next entry must have index {expected}")]
pub struct Discontinuity {
    pub expected: u64,
    pub found: u64,
}

/// What [`LogStore::open`] found and did; the node logs it and may export it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segment files replayed.
    pub segments: usize,
    /// Records replayed across all segments.
    pub records_replayed: u64,
    /// Set when damage at the tail of the last segment was cut off.
    pub tail_repair: Option<TailRepair>,
}

impl OpenReport {
    /// Whether a torn tail was repaired.
    pub fn repaired(&self) -> bool {
        self.tail_repair.is_some()
    }
}

/// A damaged tail cut off the last segment during [`LogStore::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRepair {
    /// The segment that was truncated.
    pub segment: PathBuf,
    /// Where the damaged record started; the file's new length.
    pub offset: u64,
    /// Bytes removed from the end of the file.
    pub bytes_dropped: u64,
    /// Records that began in the dropped region, the damaged one included (best effort: counting
    /// stops at the first record whose extent cannot be known).
    pub records_dropped: u64,
    /// Of those, records that were intact. Non-zero means this was not a torn write but damage in
    /// the middle of the file, and acknowledged entries may have been lost.
    pub intact_records_dropped: u64,
    /// What was wrong with the first dropped record.
    pub damage: Damage,
}

/// Counters of the writer thread, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStoreMetrics {
    /// `fdatasync` calls on segment files (batch flushes and segment rotations).
    pub segment_syncs: u64,
    /// `append` calls whose entries were made durable and whose callback reported success.
    pub appends_flushed: u64,
    /// Bytes written to segment files.
    pub bytes_written: u64,
    /// Segment files deleted after a purge.
    pub segments_deleted: u64,
}

/// One record of a segment. The variant order is part of the on-disk format: never reorder,
/// only add variants at the end. `E` is `Entry` when decoding and `&Entry` when encoding.
#[derive(Debug, Serialize, Deserialize)]
enum Record<E> {
    Entry(E),
    TruncateAfter(Option<LogId>),
    Purge(LogId),
    Committed(Option<LogId>),
}

/// A record as the writer encodes it, borrowing the entry.
type RecordOut<'a> = Record<&'a Entry>;

/// Errors the trait methods report, carried inside the `io::Error` openraft requires.
#[derive(Debug, thiserror::Error)]
enum LogIoError {
    #[error("raft log writer thread has exited")]
    WriterGone,
    #[error(
        "raft log writer stopped after an earlier I/O failure ({message}); restart the node to recover from disk"
    )]
    WriterFailed {
        kind: io::ErrorKind,
        message: String,
    },
    #[error("raft log: {context}: {source}")]
    Context {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("raft log: refusing append: {0}")]
    Discontinuity(#[from] Discontinuity),
    #[error(
        "raft log: record of {length_bytes} bytes exceeds the limit of {MAX_RECORD_PAYLOAD_BYTES} bytes"
    )]
    RecordTooLarge { length_bytes: u64 },
    #[error("raft log: cannot encode record: {0}")]
    Encode(#[source] postcard::Error),
    #[error("raft log: in-memory state poisoned by a panic")]
    MemoryPoisoned,
    #[error("raft log: hole in the in-memory log between entries {before} and {after}")]
    Hole { before: u64, after: u64 },
}

impl From<LogIoError> for io::Error {
    fn from(error: LogIoError) -> Self {
        let kind = match &error {
            LogIoError::WriterGone => io::ErrorKind::BrokenPipe,
            LogIoError::WriterFailed { kind, .. } => *kind,
            LogIoError::Context { source, .. } => source.kind(),
            LogIoError::Discontinuity(_) | LogIoError::RecordTooLarge { .. } => {
                io::ErrorKind::InvalidInput
            }
            LogIoError::Encode(_) | LogIoError::Hole { .. } => io::ErrorKind::InvalidData,
            LogIoError::MemoryPoisoned => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

fn with_context(source: io::Error, context: impl fmt::Display) -> io::Error {
    LogIoError::Context {
        context: context.to_string(),
        source,
    }
    .into()
}

// ---------------------------------------------------------------------------------------------
// Framing

/// Appends `[len][crc][postcard(value)]` to `out`.
fn frame_value<T: Serialize>(out: &mut Vec<u8>, value: &T) -> io::Result<()> {
    let payload = postcard::to_stdvec(value).map_err(LogIoError::Encode)?;
    if payload.len() > MAX_RECORD_PAYLOAD_BYTES {
        return Err(LogIoError::RecordTooLarge {
            length_bytes: payload.len() as u64,
        }
        .into());
    }
    // Bounded by MAX_RECORD_PAYLOAD_BYTES above, so it fits in a u32.
    let length = payload.len() as u32;
    out.reserve(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

fn frame_record(out: &mut Vec<u8>, record: &RecordOut<'_>) -> io::Result<()> {
    frame_value(out, record)
}

/// The outcome of reading one framed record at an offset.
#[derive(Debug)]
enum Scanned<'a> {
    /// The offset is the end of the buffer.
    End,
    Record {
        payload: &'a [u8],
        next: usize,
    },
    Damaged(Damage),
}

fn read_u32_le(bytes: &[u8]) -> Option<u32> {
    bytes
        .first_chunk::<4>()
        .map(|chunk| u32::from_le_bytes(*chunk))
}

fn scan_record(buffer: &[u8], offset: usize) -> Scanned<'_> {
    let rest = buffer.get(offset..).unwrap_or_default();
    if rest.is_empty() {
        return Scanned::End;
    }
    let (Some(length), Some(stored)) = (read_u32_le(rest), rest.get(4..).and_then(read_u32_le))
    else {
        return Scanned::Damaged(Damage::TornHeader {
            available_bytes: rest.len() as u64,
        });
    };
    let length = length as usize;
    if length == 0 {
        return Scanned::Damaged(Damage::ZeroLength);
    }
    if length > MAX_RECORD_PAYLOAD_BYTES {
        return Scanned::Damaged(Damage::LengthTooLarge {
            length_bytes: length as u64,
        });
    }
    let Some(payload) = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + length) else {
        return Scanned::Damaged(Damage::TornPayload {
            length_bytes: length as u64,
            available_bytes: (rest.len() - RECORD_HEADER_BYTES) as u64,
        });
    };
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Scanned::Damaged(Damage::ChecksumMismatch { stored, computed });
    }
    Scanned::Record {
        payload,
        next: offset + RECORD_HEADER_BYTES + length,
    }
}

/// Where the record at `offset` ends according to its length field, if that is believable.
fn record_end(buffer: &[u8], offset: usize) -> Option<usize> {
    let length = read_u32_le(buffer.get(offset..)?)? as usize;
    let end = offset
        .checked_add(RECORD_HEADER_BYTES)?
        .checked_add(length)?;
    (length > 0 && length <= MAX_RECORD_PAYLOAD_BYTES && end <= buffer.len()).then_some(end)
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Damage> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload).map_err(Damage::Undecodable)?;
    if !rest.is_empty() {
        return Err(Damage::TrailingBytes {
            extra_bytes: rest.len() as u64,
        });
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// The log as a value: pure state transitions shared by recovery and the live store.

#[derive(Debug, Default)]
struct LogContents {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    committed: Option<LogId>,
}

impl LogContents {
    /// The index the next appended entry must have; `None` when the log is empty and was never
    /// purged, so any index may start it.
    fn next_index(&self) -> Option<u64> {
        match self.entries.last_key_value() {
            Some((last, _)) => Some(last.saturating_add(1)),
            None => self
                .purged
                .as_ref()
                .map(|purged| purged.index().saturating_add(1)),
        }
    }

    fn check_append(&self, indexes: impl IntoIterator<Item = u64>) -> Result<(), Discontinuity> {
        let mut expected = self.next_index();
        for found in indexes {
            if let Some(expected) = expected
                && expected != found
            {
                return Err(Discontinuity { expected, found });
            }
            expected = Some(found.saturating_add(1));
        }
        Ok(())
    }

    /// The replay counterpart of [`Self::check_append`]. Once old segments are deleted, replay
    /// starts at a segment whose header may carry an older purge point than its first entry (the
    /// newer `Purge` record comes later), so an empty log accepts any index above the purge
    /// point. A valid log never has a gap between entries that are present, nor an entry at or
    /// below the purge point.
    fn check_replayed(&self, index: u64) -> Result<(), Discontinuity> {
        let expected = match (self.entries.last_key_value(), &self.purged) {
            (Some((last, _)), _) => last.saturating_add(1),
            (None, Some(purged)) if index <= purged.index() => purged.index().saturating_add(1),
            (None, _) => return Ok(()),
        };
        if index == expected {
            Ok(())
        } else {
            Err(Discontinuity {
                expected,
                found: index,
            })
        }
    }

    /// Inserts an entry already checked by [`Self::check_append`] or [`Self::check_replayed`].
    fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.index(), entry);
    }

    fn truncate_after(&mut self, last_kept: Option<&LogId>) {
        match last_kept.map(|id| id.index().checked_add(1)) {
            None => self.entries.clear(),
            Some(Some(first_removed)) => drop(self.entries.split_off(&first_removed)),
            Some(None) => {}
        }
    }

    fn purge(&mut self, upto: &LogId) {
        if self
            .purged
            .as_ref()
            .is_some_and(|purged| purged.index() >= upto.index())
        {
            return;
        }
        self.purged = Some(*upto);
        match upto.index().checked_add(1) {
            Some(first_kept) => self.entries = self.entries.split_off(&first_kept),
            None => self.entries.clear(),
        }
    }

    /// Applies one replayed record; returns the entry's index for an `Entry` record.
    fn replay(&mut self, record: Record<Entry>) -> Result<Option<u64>, Discontinuity> {
        match record {
            Record::Entry(entry) => {
                let index = entry.index();
                self.check_replayed(index)?;
                self.insert(entry);
                Ok(Some(index))
            }
            Record::TruncateAfter(last_kept) => {
                self.truncate_after(last_kept.as_ref());
                Ok(None)
            }
            Record::Purge(upto) => {
                self.purge(&upto);
                Ok(None)
            }
            Record::Committed(committed) => {
                self.committed = committed;
                Ok(None)
            }
        }
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let last = self
            .entries
            .last_key_value()
            .map(|(_, entry)| entry.log_id());
        LogState {
            last_purged_log_id: self.purged,
            last_log_id: last.or(self.purged),
        }
    }

    /// Clones the entries in `range`, at most `limit` of them, checking they are contiguous.
    fn read(&self, range: impl RangeBounds<u64>, limit: usize) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(start) => *start,
            Bound::Excluded(start) => match start.checked_add(1) {
                Some(start) => start,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(end) => end.checked_add(1),
            Bound::Excluded(end) => Some(*end),
            Bound::Unbounded => None,
        };
        let selected: Vec<Entry> = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self
                .entries
                .range(start..end)
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect(),
            None => self
                .entries
                .range(start..)
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect(),
        };
        for pair in selected.windows(2) {
            if let [before, after] = pair
                && before.index().checked_add(1) != Some(after.index())
            {
                return Err(LogIoError::Hole {
                    before: before.index(),
                    after: after.index(),
                }
                .into());
            }
        }
        Ok(selected)
    }
}

// ---------------------------------------------------------------------------------------------
// State shared by the store, its readers and the writer thread.

#[derive(Debug, Default)]
struct Memory {
    log: LogContents,
    vote: Option<Vote>,
}

#[derive(Debug, Default)]
struct Counters {
    segment_syncs: AtomicU64,
    appends_flushed: AtomicU64,
    bytes_written: AtomicU64,
    segments_deleted: AtomicU64,
}

/// Why the writer stopped; set once, never cleared.
#[derive(Debug, Clone)]
struct WriterFailure {
    kind: io::ErrorKind,
    message: String,
}

impl WriterFailure {
    fn to_io_error(&self) -> io::Error {
        LogIoError::WriterFailed {
            kind: self.kind,
            message: self.message.clone(),
        }
        .into()
    }
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_entries_per_read: usize,
    /// A std mutex: held only for map operations, never across an `.await`.
    memory: Mutex<Memory>,
    failure: OnceLock<WriterFailure>,
    counters: Counters,
}

impl Shared {
    fn memory(&self) -> io::Result<MutexGuard<'_, Memory>> {
        self.memory
            .lock()
            .map_err(|_| LogIoError::MemoryPoisoned.into())
    }

    fn metrics(&self) -> LogStoreMetrics {
        let c = &self.counters;
        LogStoreMetrics {
            segment_syncs: c.segment_syncs.load(Ordering::Relaxed),
            appends_flushed: c.appends_flushed.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            segments_deleted: c.segments_deleted.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The public store

/// The durable Raft log of one node. See the module documentation.
pub struct LogStore {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    writer_exited: watch::Receiver<bool>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A cheap handle that outlives the [`LogStore`] (which openraft takes by value): metrics, writer
/// health, and waiting for the writer to exit.
#[derive(Clone)]
pub struct LogStoreHandle {
    shared: Arc<Shared>,
    writer_exited: watch::Receiver<bool>,
}

impl fmt::Debug for LogStoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStoreHandle")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl LogStoreHandle {
    pub fn metrics(&self) -> LogStoreMetrics {
        self.shared.metrics()
    }

    /// The I/O failure that stopped the writer, if any (the node must restart).
    pub fn writer_failure(&self) -> Option<io::Error> {
        self.shared.failure.get().map(WriterFailure::to_io_error)
    }

    /// Resolves once the writer thread has flushed everything queued, closed its files, released
    /// the directory lock and exited. That happens after the `LogStore` is dropped.
    pub async fn closed(&self) {
        let mut exited = self.writer_exited.clone();
        // An error means the thread dropped its sender without saying so (a panic): gone as well.
        let _ = exited.wait_for(|exited| *exited).await;
    }
}

/// A reader over the in-memory log, for openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl fmt::Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`, replays it, repairs a torn tail, and starts
    /// the writer thread. Blocking: call before the runtime serves traffic or via
    /// `spawn_blocking`.
    pub fn open(
        dir: impl AsRef<Path>,
        options: LogStoreOptions,
    ) -> Result<(LogStore, OpenReport), LogStoreError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let directory = prepare_directory(&dir)?;
        let lock = lock_directory(&dir)?;
        remove_stale_vote_tmp(&dir, &directory)?;
        let vote = read_vote_file(&dir)?;
        let recovered = recover_segments(&dir, &directory)?;

        let Recovered {
            contents,
            segments,
            active,
            active_len,
            report,
        } = recovered;
        let purged = contents.purged;
        let committed = contents.committed;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            max_entries_per_read: options.max_entries_per_read,
            memory: Mutex::new(Memory {
                log: contents,
                vote,
            }),
            failure: OnceLock::new(),
            counters: Counters::default(),
        });
        let (commands, queue) = mpsc::channel(options.queue_capacity);
        let (exited_sender, writer_exited) = watch::channel(false);
        let mut writer = Writer {
            dir: dir.clone(),
            directory,
            segment_max_bytes: options.segment_max_bytes,
            batch_max: options.queue_capacity,
            segments,
            active,
            active_len,
            dirty: false,
            purged,
            committed,
            deletion_due: false,
            failure: None,
            shared: Arc::clone(&shared),
            lock,
        };
        writer.start().map_err(|source| {
            LogStoreError::io(
                "restating the purge point and committed id in",
                &dir,
                source,
            )
        })?;
        thread::Builder::new()
            .name(WRITER_THREAD_NAME.to_string())
            .spawn(move || writer.run(queue, exited_sender))
            .map_err(|source| LogStoreError::io("starting the writer thread for", &dir, source))?;

        Ok((
            LogStore {
                shared,
                commands,
                writer_exited,
            },
            report,
        ))
    }

    /// A handle that stays usable after the store is moved into openraft.
    pub fn handle(&self) -> LogStoreHandle {
        LogStoreHandle {
            shared: Arc::clone(&self.shared),
            writer_exited: self.writer_exited.clone(),
        }
    }

    pub fn metrics(&self) -> LogStoreMetrics {
        self.shared.metrics()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Drops the store and waits until the writer has flushed and exited.
    pub async fn close(self) {
        let handle = self.handle();
        drop(self);
        handle.closed().await;
    }

    /// Sends a command to the writer, or fails it (and its callback) if the writer is gone.
    async fn submit(&self, command: Command) -> io::Result<()> {
        if let Some(failure) = self.shared.failure.get() {
            command.abandon(failure.to_io_error());
            return Err(failure.to_io_error());
        }
        match self.commands.send(command).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(command)) => {
                command.abandon(LogIoError::WriterGone.into());
                Err(LogIoError::WriterGone.into())
            }
        }
    }

    /// Submits a command that carries `reply` and waits for the writer's answer.
    async fn submit_and_wait(
        &self,
        command: Command,
        answer: oneshot::Receiver<io::Result<()>>,
    ) -> io::Result<()> {
        self.submit(command).await?;
        answer
            .await
            .map_err(|_| io::Error::from(LogIoError::WriterGone))?
    }

    /// Blocks the writer until the returned sender sends or is dropped, so tests can queue
    /// commands and observe how they are batched. Returns once the writer is blocked.
    #[cfg(test)]
    async fn pause_writer(&self) -> std::sync::mpsc::Sender<()> {
        let (resume_sender, resume) = std::sync::mpsc::channel();
        let (paused, is_paused) = oneshot::channel();
        self.submit(Command::Pause { paused, resume })
            .await
            .expect("writer accepts a pause");
        is_paused.await.expect("writer pauses");
        resume_sender
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> Result<Vec<Entry>, io::Error>
    where
        RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend,
    {
        self.shared.memory()?.log.read(range, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.memory()?.vote)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        let limit = self.shared.max_entries_per_read;
        self.shared.memory()?.log.read(start..end, limit)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        Ok(self.shared.memory()?.log.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut framed = Vec::new();
        frame_value(&mut framed, vote)?;
        let (reply, answer) = oneshot::channel();
        self.submit_and_wait(Command::SaveVote { framed, reply }, answer)
            .await?;
        self.shared.memory()?.vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.shared.memory()?.log.committed = committed;
        self.submit(Command::SaveCommitted { committed }).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.memory()?.log.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut records = Vec::new();
        for entry in &entries {
            frame_record(&mut records, &Record::Entry(entry))?;
        }
        let last_index = entries.last().map(|entry| entry.index());
        {
            let mut memory = self.shared.memory()?;
            memory
                .log
                .check_append(entries.iter().map(|entry| entry.index()))
                .map_err(LogIoError::from)?;
            for entry in entries {
                memory.log.insert(entry);
            }
        }
        self.submit(Command::Append {
            records,
            last_index,
            flushed: callback,
        })
        .await
    }

    async fn truncate_after(&mut self, last_kept: Option<LogId>) -> Result<(), io::Error> {
        self.shared.memory()?.log.truncate_after(last_kept.as_ref());
        let (reply, answer) = oneshot::channel();
        self.submit_and_wait(Command::TruncateAfter { last_kept, reply }, answer)
            .await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        self.shared.memory()?.log.purge(&upto);
        let (reply, answer) = oneshot::channel();
        self.submit_and_wait(Command::Purge { upto, reply }, answer)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery

fn prepare_directory(dir: &Path) -> Result<File, LogStoreError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|source| LogStoreError::io("creating", dir, source))?;
        if let Some(parent) = dir.parent()
            && !parent.as_os_str().is_empty()
        {
            sync_directory(parent)
                .map_err(|source| LogStoreError::io("syncing", parent, source))?;
        }
    }
    File::open(dir).map_err(|source| LogStoreError::io("opening directory", dir, source))
}

fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn lock_directory(dir: &Path) -> Result<File, LogStoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LogStoreError::io("opening", &path, source))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(LogStoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(source)) => Err(LogStoreError::io("locking", &path, source)),
    }
}

/// A crash between writing `vote.tmp` and renaming it leaves the old `vote` in force.
fn remove_stale_vote_tmp(dir: &Path, directory: &File) -> Result<(), LogStoreError> {
    let path = dir.join(VOTE_TMP_FILE);
    match fs::remove_file(&path) {
        Ok(()) => directory
            .sync_all()
            .map_err(|source| LogStoreError::io("syncing", dir, source)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LogStoreError::io("removing", &path, source)),
    }
}

fn read_vote_file(dir: &Path) -> Result<Option<Vote>, LogStoreError> {
    let path = dir.join(VOTE_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LogStoreError::io("reading", &path, source)),
    };
    match scan_record(&bytes, 0) {
        Scanned::Record { payload, next } if next == bytes.len() => decode::<Vote>(payload)
            .map(Some)
            .map_err(|damage| LogStoreError::corruption(&path, 0, damage)),
        Scanned::Record { next, .. } => Err(LogStoreError::corruption(
            &path,
            next,
            Damage::TrailingBytes {
                extra_bytes: (bytes.len() - next) as u64,
            },
        )),
        Scanned::End => Err(LogStoreError::corruption(
            &path,
            0,
            Damage::TornHeader { available_bytes: 0 },
        )),
        Scanned::Damaged(damage) => Err(LogStoreError::corruption(&path, 0, damage)),
    }
}

#[derive(Debug)]
struct SegmentInfo {
    sequence: u64,
    path: PathBuf,
    /// The highest entry index ever written into this segment; truncation does not lower it.
    max_entry_index: Option<u64>,
}

fn segment_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!(
        "{sequence:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogStoreError> {
    let listing = |source| LogStoreError::io("listing", dir, source);
    let mut segments = Vec::new();
    for dir_entry in fs::read_dir(dir).map_err(listing)? {
        let dir_entry = dir_entry.map_err(listing)?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_segment_name(name) {
            Some(sequence) => segments.push((sequence, dir_entry.path())),
            None if name.ends_with(SEGMENT_SUFFIX) => {
                tracing::warn!(file = %dir_entry.path().display(), "raft log: ignoring a misnamed segment file");
            }
            None => {}
        }
    }
    segments.sort_by_key(|(sequence, _)| *sequence);
    Ok(segments)
}

struct Recovered {
    contents: LogContents,
    segments: VecDeque<SegmentInfo>,
    active: File,
    active_len: u64,
    report: OpenReport,
}

fn recover_segments(dir: &Path, directory: &File) -> Result<Recovered, LogStoreError> {
    let listed = list_segments(dir)?;
    let last_position = listed.len().checked_sub(1);
    let mut contents = LogContents::default();
    let mut segments = VecDeque::with_capacity(listed.len());
    let mut report = OpenReport::default();

    for (position, (sequence, path)) in listed.into_iter().enumerate() {
        let is_last = Some(position) == last_position;
        let bytes =
            fs::read(&path).map_err(|source| LogStoreError::io("reading", &path, source))?;
        let mut offset = 0;
        let mut max_entry_index = None;
        loop {
            match scan_record(&bytes, offset) {
                Scanned::End => break,
                Scanned::Record { payload, next } => {
                    let record = decode::<Record<Entry>>(payload)
                        .map_err(|damage| LogStoreError::corruption(&path, offset, damage))?;
                    let entry_index = contents
                        .replay(record)
                        .map_err(|gap| LogStoreError::corruption(&path, offset, gap.into()))?;
                    max_entry_index = max_entry_index.max(entry_index);
                    report.records_replayed += 1;
                    offset = next;
                }
                Scanned::Damaged(damage) if is_last && damage.is_torn_write() => {
                    report.tail_repair = Some(repair_tail(&path, &bytes, offset, damage)?);
                    break;
                }
                Scanned::Damaged(damage) => {
                    return Err(LogStoreError::corruption(&path, offset, damage));
                }
            }
        }
        report.segments += 1;
        segments.push_back(SegmentInfo {
            sequence,
            path,
            max_entry_index,
        });
    }

    if segments.is_empty() {
        let path = segment_path(dir, 1);
        File::create_new(&path).map_err(|source| LogStoreError::io("creating", &path, source))?;
        directory
            .sync_all()
            .map_err(|source| LogStoreError::io("syncing", dir, source))?;
        segments.push_back(SegmentInfo {
            sequence: 1,
            path,
            max_entry_index: None,
        });
    }
    let Some(active_info) = segments.back() else {
        unreachable!("a segment was created above when none existed");
    };
    let active_path = &active_info.path;
    let active = OpenOptions::new()
        .append(true)
        .open(active_path)
        .map_err(|source| LogStoreError::io("opening", active_path, source))?;
    let active_len = active
        .metadata()
        .map_err(|source| LogStoreError::io("inspecting", active_path, source))?
        .len();

    Ok(Recovered {
        contents,
        segments,
        active,
        active_len,
        report,
    })
}

/// Cuts the last segment at `offset`, where `damage` starts, and syncs it.
fn repair_tail(
    path: &Path,
    bytes: &[u8],
    offset: usize,
    damage: Damage,
) -> Result<TailRepair, LogStoreError> {
    let (records_dropped, intact_records_dropped) = count_dropped_records(bytes, offset);
    let bytes_dropped = (bytes.len() - offset) as u64;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| LogStoreError::io("opening for repair", path, source))?;
    file.set_len(offset as u64)
        .map_err(|source| LogStoreError::io("truncating", path, source))?;
    file.sync_all()
        .map_err(|source| LogStoreError::io("syncing", path, source))?;

    tracing::warn!(
        segment = %path.display(),
        offset,
        bytes_dropped,
        records_dropped,
        %damage,
        "raft log: dropped {bytes_dropped} bytes of damaged tail at offset {offset}"
    );
    if intact_records_dropped > 0 {
        tracing::error!(
            segment = %path.display(),
            offset,
            intact_records_dropped,
            "raft log: intact records followed the damage: this was not a torn write, acknowledged entries may be lost"
        );
    }
    Ok(TailRepair {
        segment: path.to_path_buf(),
        offset: offset as u64,
        bytes_dropped,
        records_dropped,
        intact_records_dropped,
        damage,
    })
}

/// Counts records starting at `offset` (damaged first one included) and, of those, intact ones.
fn count_dropped_records(bytes: &[u8], mut offset: usize) -> (u64, u64) {
    let (mut total, mut intact) = (0, 0);
    while offset < bytes.len() {
        total += 1;
        match scan_record(bytes, offset) {
            Scanned::Record { next, .. } => {
                intact += 1;
                offset = next;
            }
            Scanned::Damaged(Damage::ChecksumMismatch { .. }) => match record_end(bytes, offset) {
                Some(next) => offset = next,
                None => break,
            },
            Scanned::Damaged(_) | Scanned::End => break,
        }
    }
    (total, intact)
}

// ---------------------------------------------------------------------------------------------
// The writer thread

/// What the store asks of the writer, in call order.
enum Command {
    /// Pre-framed entry records (possibly none); `flushed` fires after they are durable.
    Append {
        records: Vec<u8>,
        last_index: Option<u64>,
        flushed: IOFlushed<TypeConfig>,
    },
    TruncateAfter {
        last_kept: Option<LogId>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: LogId,
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// Not waited for: made durable by the flush that ends the batch.
    SaveCommitted { committed: Option<LogId> },
    /// A framed vote: flush what precedes, then replace the vote file.
    SaveVote {
        framed: Vec<u8>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// Test only: flush, acknowledge on `paused`, then block until `resume` fires or drops.
    #[cfg(test)]
    Pause {
        paused: oneshot::Sender<()>,
        resume: std::sync::mpsc::Receiver<()>,
    },
}

impl Command {
    /// Reports `error` to whoever waits on a command that will never be executed.
    fn abandon(self, error: io::Error) {
        match self {
            Command::Append { flushed, .. } => flushed.io_completed(Err(error)),
            Command::TruncateAfter { reply, .. }
            | Command::Purge { reply, .. }
            | Command::SaveVote { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::SaveCommitted { .. } => {}
            #[cfg(test)]
            Command::Pause { .. } => {}
        }
    }
}

/// Someone waiting for the batch's flush.
enum Waiter {
    Flushed(IOFlushed<TypeConfig>),
    Reply(oneshot::Sender<io::Result<()>>),
}

struct Writer {
    dir: PathBuf,
    directory: File,
    segment_max_bytes: u64,
    batch_max: usize,
    /// Oldest first; never empty; the back is the active segment.
    segments: VecDeque<SegmentInfo>,
    active: File,
    active_len: u64,
    /// Bytes written to `active` since its last sync.
    dirty: bool,
    /// The writer's own view of the purge point and committed id, for segment headers.
    purged: Option<LogId>,
    committed: Option<LogId>,
    /// A purge became durable (or the store just opened): look for segments to delete.
    deletion_due: bool,
    failure: Option<WriterFailure>,
    shared: Arc<Shared>,
    /// Holds the directory lock until the writer exits.
    lock: File,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Command>, exited: watch::Sender<bool>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        let mut waiters = Vec::with_capacity(self.batch_max);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < self.batch_max {
                match queue.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            for command in batch.drain(..) {
                self.execute(command, &mut waiters);
            }
            self.settle(&mut waiters);
        }
        // Sync a trailing `Committed` record that nobody waited for.
        if self.failure.is_none() && self.dirty {
            let synced = self.sync_active();
            self.guard(synced);
        }
        let Writer {
            active, lock, dir, ..
        } = self;
        drop(active);
        drop(lock);
        tracing::debug!(dir = %dir.display(), "raft log writer exited");
        exited.send_replace(true);
    }

    fn execute(&mut self, command: Command, waiters: &mut Vec<Waiter>) {
        match command {
            Command::Append {
                records,
                last_index,
                flushed,
            } => {
                let written = self.write_bytes(&records, last_index);
                self.guard(written);
                waiters.push(Waiter::Flushed(flushed));
            }
            Command::TruncateAfter { last_kept, reply } => {
                let written = self.write_record(&Record::TruncateAfter(last_kept));
                self.guard(written);
                waiters.push(Waiter::Reply(reply));
            }
            Command::Purge { upto, reply } => {
                let written = self.write_record(&Record::Purge(upto));
                self.guard(written);
                if self
                    .purged
                    .as_ref()
                    .is_none_or(|purged| purged.index() < upto.index())
                {
                    self.purged = Some(upto);
                    self.deletion_due = true;
                }
                waiters.push(Waiter::Reply(reply));
            }
            Command::SaveCommitted { committed } => {
                let written = self.write_record(&Record::Committed(committed));
                self.guard(written);
                self.committed = committed;
            }
            Command::SaveVote { framed, reply } => {
                // Everything submitted before the vote must be durable before it.
                self.settle(waiters);
                if self.failure.is_none() {
                    let persisted = self.persist_vote(&framed);
                    self.guard(persisted);
                }
                let _ = reply.send(self.outcome());
            }
            #[cfg(test)]
            Command::Pause { paused, resume } => {
                self.settle(waiters);
                let _ = paused.send(());
                let _ = resume.recv();
            }
        }
    }

    fn outcome(&self) -> io::Result<()> {
        match &self.failure {
            None => Ok(()),
            Some(failure) => Err(failure.to_io_error()),
        }
    }

    /// Records the first failure; from then on nothing is written.
    fn guard(&mut self, result: io::Result<()>) {
        if let Err(error) = result
            && self.failure.is_none()
        {
            tracing::error!(dir = %self.dir.display(), %error, "raft log writer failed; no further writes");
            let failure = WriterFailure {
                kind: error.kind(),
                message: error.to_string(),
            };
            let _ = self.shared.failure.set(failure.clone());
            self.failure = Some(failure);
        }
    }

    /// Syncs what was written, deletes purged segments, then completes every waiter.
    /// A batch with nobody waiting (only `Committed` records, which are advisory) is left for
    /// the next flush instead of costing an fsync of its own.
    fn settle(&mut self, waiters: &mut Vec<Waiter>) {
        if self.failure.is_none() && self.dirty && (!waiters.is_empty() || self.deletion_due) {
            let synced = self.sync_active();
            self.guard(synced);
        }
        if self.failure.is_none() && self.deletion_due {
            self.delete_purged_segments();
        }
        if self.failure.is_none() {
            // Counted before the callbacks fire, so whoever they wake sees the count.
            let appends = waiters
                .iter()
                .filter(|waiter| matches!(waiter, Waiter::Flushed(_)))
                .count();
            self.shared
                .counters
                .appends_flushed
                .fetch_add(appends as u64, Ordering::Relaxed);
        }
        for waiter in waiters.drain(..) {
            match waiter {
                Waiter::Flushed(flushed) => flushed.io_completed(self.outcome()),
                Waiter::Reply(reply) => {
                    let _ = reply.send(self.outcome());
                }
            }
        }
    }

    fn active_path(&self) -> &Path {
        self.segments
            .back()
            .map_or(&self.dir, |segment| &segment.path)
    }

    fn sync_active(&mut self) -> io::Result<()> {
        self.active.sync_data().map_err(|error| {
            with_context(
                error,
                format_args!("syncing {}", self.active_path().display()),
            )
        })?;
        self.dirty = false;
        self.shared
            .counters
            .segment_syncs
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_record(&mut self, record: &RecordOut<'_>) -> io::Result<()> {
        let mut framed = Vec::new();
        frame_record(&mut framed, record)?;
        self.write_bytes(&framed, None)
    }

    /// Appends framed records to the active segment, rotating first if it is full.
    fn write_bytes(&mut self, framed: &[u8], max_entry_index: Option<u64>) -> io::Result<()> {
        self.outcome()?;
        if framed.is_empty() {
            return Ok(());
        }
        if self.active_len >= self.segment_max_bytes {
            self.rotate()?;
        }
        self.active.write_all(framed).map_err(|error| {
            with_context(
                error,
                format_args!("writing {}", self.active_path().display()),
            )
        })?;
        self.active_len += framed.len() as u64;
        self.dirty = true;
        self.shared
            .counters
            .bytes_written
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
        if let Some(active) = self.segments.back_mut() {
            active.max_entry_index = active.max_entry_index.max(max_entry_index);
        }
        Ok(())
    }

    /// Seals the active segment and starts the next one with the purge/committed header.
    /// The `Purge` and `Committed` records that restate the current state at the head of a
    /// segment, so that deleting older segments loses neither.
    fn header(&self) -> io::Result<Vec<u8>> {
        let mut header = Vec::new();
        if let Some(purged) = self.purged {
            frame_record(&mut header, &Record::Purge(purged))?;
        }
        if let Some(committed) = self.committed {
            frame_record(&mut header, &Record::Committed(Some(committed)))?;
        }
        Ok(header)
    }

    /// Runs once in [`LogStore::open`], before the thread starts. The active segment may lack
    /// its header (a crash during rotation, or a tail repair that cut into it), so the header is
    /// restated; segment deletions that a crash interrupted are finished.
    fn start(&mut self) -> io::Result<()> {
        let header = self.header()?;
        self.write_bytes(&header, None)?;
        if self.dirty {
            self.sync_active()?;
        }
        self.delete_purged_segments();
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.dirty {
            self.sync_active()?;
        }
        let sequence = self
            .segments
            .back()
            .map_or(1, |segment| segment.sequence + 1);
        let path = segment_path(&self.dir, sequence);
        let context =
            |error, action: &str| with_context(error, format_args!("{action} {}", path.display()));

        let header = self.header()?;
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| context(error, "creating"))?;
        file.write_all(&header)
            .map_err(|error| context(error, "writing"))?;
        file.sync_data()
            .map_err(|error| context(error, "syncing"))?;
        self.directory.sync_all().map_err(|error| {
            with_context(
                error,
                format_args!("syncing directory {}", self.dir.display()),
            )
        })?;

        let counters = &self.shared.counters;
        counters.segment_syncs.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_written
            .fetch_add(header.len() as u64, Ordering::Relaxed);
        tracing::debug!(segment = %path.display(), "raft log: started a new segment");
        self.active = file;
        self.active_len = header.len() as u64;
        self.dirty = false;
        self.segments.push_back(SegmentInfo {
            sequence,
            path,
            max_entry_index: None,
        });
        Ok(())
    }

    /// Deletes the oldest sealed segments while all their entries are purged. A failed deletion
    /// is only logged: the segment replays harmlessly and is retried after the next purge.
    fn delete_purged_segments(&mut self) {
        self.deletion_due = false;
        let Some(purged_index) = self.purged.as_ref().map(|purged| purged.index()) else {
            return;
        };
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else {
                break;
            };
            if oldest
                .max_entry_index
                .is_some_and(|index| index > purged_index)
            {
                break;
            }
            match fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(segment = %oldest.path.display(), %error, "raft log: cannot delete a purged segment");
                    break;
                }
            }
            tracing::debug!(segment = %oldest.path.display(), purged_index, "raft log: deleted a purged segment");
            self.segments.pop_front();
            deleted += 1;
        }
        if deleted > 0 {
            self.shared
                .counters
                .segments_deleted
                .fetch_add(deleted, Ordering::Relaxed);
            if let Err(error) = self.directory.sync_all() {
                tracing::warn!(dir = %self.dir.display(), %error, "raft log: cannot sync the directory after deleting segments");
            }
        }
    }

    /// Replaces the vote file atomically: tmp, fsync, rename, fsync directory.
    fn persist_vote(&mut self, framed: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(VOTE_TMP_FILE);
        let target = self.dir.join(VOTE_FILE);
        let context =
            |error, action: &str| with_context(error, format_args!("{action} {}", tmp.display()));
        let mut file = File::create(&tmp).map_err(|error| context(error, "creating"))?;
        file.write_all(framed)
            .map_err(|error| context(error, "writing"))?;
        file.sync_all().map_err(|error| context(error, "syncing"))?;
        drop(file);
        fs::rename(&tmp, &target).map_err(|error| context(error, "renaming"))?;
        self.directory.sync_all().map_err(|error| {
            with_context(
                error,
                format_args!("syncing directory {}", self.dir.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios on real files in temporary directories, plus openraft's storage suite.

    use std::io::Cursor;

    use futures::{Stream, TryStreamExt};
    use openraft::alias::{LeaderIdOf, SnapshotOf};
    use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::type_config::TypeConfigExt;
    use openraft::vote::RaftLeaderIdExt;
    use openraft::{EntryPayload, StorageError};
    use tempfile::TempDir;

    use super::*;
    use crate::raft::types::{
        Command as AppCommand, CommandResponse, ProposalId, SnapshotMeta, StoredMembership,
        WritePart,
    };

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderIdOf::<TypeConfig>::new_committed(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry::new_normal(
            log_id(term, index),
            AppCommand::Write {
                proposal: ProposalId {
                    node: 1,
                    boot: 7,
                    seq: index,
                },
                parts: vec![WritePart::Ddl(format!("CREATE TABLE t{index} (x INTEGER)"))],
            },
        )
    }

    fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes.map(|index| entry(term, index)).collect()
    }

    fn small_segments() -> LogStoreOptions {
        LogStoreOptions {
            segment_max_bytes: 300,
            ..LogStoreOptions::default()
        }
    }

    fn open(dir: &Path, options: LogStoreOptions) -> (LogStore, OpenReport) {
        LogStore::open(dir, options).expect("log opens")
    }

    /// Appends and waits for the flush callback.
    async fn append_flushed(store: &mut LogStore, batch: Vec<Entry>) -> io::Result<()> {
        let (sender, flushed) = TypeConfig::oneshot();
        store.append(batch, IOFlushed::signal(sender)).await?;
        flushed
            .await
            .map_err(|_| io::Error::other("flush callback dropped"))?
    }

    async fn read_all(store: &mut LogStore) -> Vec<Entry> {
        store
            .get_log_reader()
            .await
            .try_get_log_entries(..)
            .await
            .expect("entries readable")
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.index()).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir)
            .expect("segments listed")
            .into_iter()
            .map(|(_, path)| path)
            .collect()
    }

    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut offsets = Vec::new();
        let mut offset = 0;
        while let Scanned::Record { next, .. } = scan_record(bytes, offset) {
            offsets.push(offset);
            offset = next;
        }
        offsets
    }

    /// Ten entries, one append each, in the default (single) segment; the store is closed.
    async fn ten_entries_closed(dir: &Path) {
        let (mut store, _) = open(dir, LogStoreOptions::default());
        for index in 1..=10 {
            append_flushed(&mut store, vec![entry(1, index)])
                .await
                .expect("append");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn round_trip_survives_reopen() {
        let temp = TempDir::new().expect("tempdir");
        let dir = temp.path().join("raft-log");
        {
            let (mut store, report) = open(&dir, LogStoreOptions::default());
            assert_eq!(
                report,
                OpenReport::default(),
                "a new directory has nothing to replay"
            );
            append_flushed(&mut store, entries(1, 1..=10))
                .await
                .expect("append");
            store
                .save_vote(&Vote::new_committed(2, 1))
                .await
                .expect("vote");
            store
                .save_committed(Some(log_id(1, 6)))
                .await
                .expect("committed");
            store
                .truncate_after(Some(log_id(1, 8)))
                .await
                .expect("truncate");
            store.purge(log_id(1, 3)).await.expect("purge");
            append_flushed(&mut store, entries(2, 9..=12))
                .await
                .expect("append after truncate");

            assert_eq!(
                indexes(&read_all(&mut store).await),
                (4..=12).collect::<Vec<_>>()
            );
            store.close().await;
        }

        let (mut store, report) = open(&dir, LogStoreOptions::default());
        assert!(!report.repaired());
        let read = read_all(&mut store).await;
        assert_eq!(indexes(&read), (4..=12).collect::<Vec<_>>());
        assert_eq!(
            read[4],
            entry(1, 8),
            "entries before the truncation point survive"
        );
        assert_eq!(read[5], entry(2, 9), "entries after it are the new term's");
        assert_eq!(
            store.get_log_state().await.expect("state"),
            LogState {
                last_purged_log_id: Some(log_id(1, 3)),
                last_log_id: Some(log_id(2, 12)),
            }
        );
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 6))
        );
        let mut reader = store.get_log_reader().await;
        assert_eq!(
            reader.read_vote().await.expect("vote"),
            Some(Vote::new_committed(2, 1))
        );
        assert_eq!(
            indexes(
                &reader
                    .limited_get_log_entries(5, 100)
                    .await
                    .expect("limited")
            ),
            (5..=12).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn appends_that_would_leave_a_hole_are_refused() {
        let temp = TempDir::new().expect("tempdir");
        let (mut store, _) = open(temp.path(), LogStoreOptions::default());
        append_flushed(&mut store, entries(1, 1..=3))
            .await
            .expect("append");

        let gap = append_flushed(&mut store, vec![entry(1, 5)])
            .await
            .expect_err("gap refused");
        assert_eq!(gap.kind(), io::ErrorKind::InvalidInput);
        let overlap = append_flushed(&mut store, vec![entry(2, 3)])
            .await
            .expect_err("overlap refused");
        assert_eq!(overlap.kind(), io::ErrorKind::InvalidInput);

        store.purge(log_id(1, 3)).await.expect("purge all");
        append_flushed(&mut store, vec![entry(1, 4)])
            .await
            .expect("append after the purge point");
        assert_eq!(indexes(&read_all(&mut store).await), vec![4]);
    }

    #[tokio::test]
    async fn second_open_of_the_same_directory_is_locked_out() {
        let temp = TempDir::new().expect("tempdir");
        let (store, _) = open(temp.path(), LogStoreOptions::default());
        let err = LogStore::open(temp.path(), LogStoreOptions::default()).expect_err("locked");
        assert!(matches!(err, LogStoreError::Locked { .. }), "{err}");
        store.close().await;
        let _reopened = open(temp.path(), LogStoreOptions::default());
    }

    #[tokio::test]
    async fn torn_last_record_is_cut_off_and_reported() {
        let temp = TempDir::new().expect("tempdir");
        ten_entries_closed(temp.path()).await;
        let segment = segment_files(temp.path()).pop().expect("a segment");
        let bytes = fs::read(&segment).expect("read");
        let last_offset = *record_offsets(&bytes).last().expect("records");
        let cut = bytes.len() as u64 - 3;
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .and_then(|file| file.set_len(cut))
            .expect("chop");

        let (mut store, report) = open(temp.path(), LogStoreOptions::default());
        let repair = report.tail_repair.clone().expect("repaired");
        assert_eq!(repair.segment, segment);
        assert_eq!(repair.offset, last_offset as u64);
        assert_eq!(repair.bytes_dropped, cut - last_offset as u64);
        assert_eq!(
            (repair.records_dropped, repair.intact_records_dropped),
            (1, 0)
        );
        assert!(
            matches!(repair.damage, Damage::TornPayload { .. }),
            "{:?}",
            repair.damage
        );
        assert_eq!(
            indexes(&read_all(&mut store).await),
            (1..=9).collect::<Vec<_>>()
        );
        assert_eq!(
            fs::metadata(&segment).expect("stat").len(),
            last_offset as u64
        );

        // The repaired file takes new records and replays cleanly.
        append_flushed(&mut store, vec![entry(2, 10)])
            .await
            .expect("append");
        store.close().await;
        let (mut store, report) = open(temp.path(), LogStoreOptions::default());
        assert!(!report.repaired());
        assert_eq!(
            indexes(&read_all(&mut store).await),
            (1..=10).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn checksum_mismatch_in_last_record_is_cut_off() {
        let temp = TempDir::new().expect("tempdir");
        ten_entries_closed(temp.path()).await;
        let segment = segment_files(temp.path()).pop().expect("a segment");
        let mut bytes = fs::read(&segment).expect("read");
        let last_offset = *record_offsets(&bytes).last().expect("records");
        bytes[last_offset + 4] ^= 0xff; // the stored CRC
        fs::write(&segment, &bytes).expect("write");

        let (mut store, report) = open(temp.path(), LogStoreOptions::default());
        let repair = report.tail_repair.expect("repaired");
        assert_eq!(repair.offset, last_offset as u64);
        assert_eq!(repair.bytes_dropped, (bytes.len() - last_offset) as u64);
        assert!(matches!(repair.damage, Damage::ChecksumMismatch { .. }));
        assert_eq!(
            indexes(&read_all(&mut store).await),
            (1..=9).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn damage_followed_by_intact_records_is_flagged() {
        let temp = TempDir::new().expect("tempdir");
        ten_entries_closed(temp.path()).await;
        let segment = segment_files(temp.path()).pop().expect("a segment");
        let mut bytes = fs::read(&segment).expect("read");
        let seventh = record_offsets(&bytes)[6];
        bytes[seventh + RECORD_HEADER_BYTES] ^= 0x01; // a payload byte of entry 7
        fs::write(&segment, &bytes).expect("write");

        let (mut store, report) = open(temp.path(), LogStoreOptions::default());
        let repair = report.tail_repair.expect("repaired");
        assert_eq!(
            (repair.records_dropped, repair.intact_records_dropped),
            (4, 3)
        );
        assert_eq!(
            indexes(&read_all(&mut store).await),
            (1..=6).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn zero_filled_tail_is_cut_off() {
        let temp = TempDir::new().expect("tempdir");
        ten_entries_closed(temp.path()).await;
        let segment = segment_files(temp.path()).pop().expect("a segment");
        let len = fs::metadata(&segment).expect("stat").len();
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .and_then(|file| file.set_len(len + 4096))
            .expect("extend");

        let (mut store, report) = open(temp.path(), LogStoreOptions::default());
        let repair = report.tail_repair.expect("repaired");
        assert_eq!((repair.offset, repair.bytes_dropped), (len, 4096));
        assert_eq!(repair.damage, Damage::ZeroLength);
        assert_eq!(
            indexes(&read_all(&mut store).await),
            (1..=10).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn damage_in_a_sealed_segment_refuses_to_open() {
        let temp = TempDir::new().expect("tempdir");
        {
            let (mut store, _) = open(temp.path(), small_segments());
            for index in 1..=20 {
                append_flushed(&mut store, vec![entry(1, index)])
                    .await
                    .expect("append");
            }
            store.close().await;
        }
        let segments = segment_files(temp.path());
        assert!(segments.len() > 2, "rotation happened: {segments:?}");
        let sealed = &segments[0];
        let mut bytes = fs::read(sealed).expect("read");
        let second = record_offsets(&bytes)[1];
        bytes[second + RECORD_HEADER_BYTES + 2] ^= 0x40;
        fs::write(sealed, &bytes).expect("write");

        match LogStore::open(temp.path(), small_segments()) {
            Err(LogStoreError::Corruption {
                path,
                offset,
                damage,
            }) => {
                assert_eq!(&path, sealed);
                assert_eq!(offset, second as u64);
                assert!(matches!(damage, Damage::ChecksumMismatch { .. }));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn corrupt_vote_file_refuses_to_open() {
        let temp = TempDir::new().expect("tempdir");
        {
            let (mut store, _) = open(temp.path(), LogStoreOptions::default());
            store.save_vote(&Vote::new(3, 2)).await.expect("vote");
            store.close().await;
        }
        let path = temp.path().join(VOTE_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let err = LogStore::open(temp.path(), LogStoreOptions::default()).expect_err("refused");
        assert!(matches!(err, LogStoreError::Corruption { .. }), "{err}");
    }

    #[tokio::test]
    async fn segments_rotate_and_purged_ones_are_deleted() {
        let temp = TempDir::new().expect("tempdir");
        let dir = temp.path();
        {
            let (mut store, _) = open(dir, small_segments());
            for index in 1..=30 {
                append_flushed(&mut store, vec![entry(1, index)])
                    .await
                    .expect("append");
                if index == 5 {
                    // Its record lands in an early segment that the purge below deletes; the
                    // headers of later segments must carry it.
                    store
                        .save_committed(Some(log_id(1, 5)))
                        .await
                        .expect("committed");
                }
            }
            let before = segment_files(dir);
            assert!(before.len() >= 5, "tiny segments rotate: {before:?}");

            store.purge(log_id(1, 20)).await.expect("purge");
            let after = segment_files(dir);
            assert!(after.len() < before.len(), "purged segments deleted");
            assert_eq!(
                store.metrics().segments_deleted as usize,
                before.len() - after.len()
            );
            assert_eq!(after.last(), before.last(), "active segment kept");
            // The oldest surviving segment still holds an entry above the purge point; every
            // deleted one held only purged entries.
            let oldest = fs::read(&after[0]).expect("read");
            let max_in_oldest = record_offsets(&oldest)
                .into_iter()
                .filter_map(|offset| match scan_record(&oldest, offset) {
                    Scanned::Record { payload, .. } => match decode::<Record<Entry>>(payload) {
                        Ok(Record::Entry(entry)) => Some(entry.index()),
                        _ => None,
                    },
                    _ => None,
                })
                .max();
            assert!(
                max_in_oldest.is_some_and(|index| index > 20),
                "{max_in_oldest:?}"
            );
            store.close().await;
        }
        {
            let (mut store, report) = open(dir, small_segments());
            assert!(!report.repaired());
            assert_eq!(
                indexes(&read_all(&mut store).await),
                (21..=30).collect::<Vec<_>>()
            );
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id, Some(log_id(1, 20)));
            assert_eq!(
                store.read_committed().await.expect("committed"),
                Some(log_id(1, 5))
            );

            for index in 31..=40 {
                append_flushed(&mut store, vec![entry(1, index)])
                    .await
                    .expect("append");
            }
            store.purge(log_id(1, 40)).await.expect("purge all");
            assert_eq!(
                segment_files(dir).len(),
                1,
                "only the active segment is left"
            );
            store.close().await;
        }
        let (mut store, _) = open(dir, small_segments());
        assert!(read_all(&mut store).await.is_empty());
        assert_eq!(
            store.get_log_state().await.expect("state"),
            LogState {
                last_purged_log_id: Some(log_id(1, 40)),
                last_log_id: Some(log_id(1, 40)),
            }
        );
        append_flushed(&mut store, vec![entry(2, 41)])
            .await
            .expect("append after full purge");
    }

    /// A crash right after a rotation created the next segment, before its header was written,
    /// leaves an empty last segment. Opening restates the header in it, so the committed id
    /// survives the deletion of every older segment.
    #[tokio::test]
    async fn segment_created_without_header_gets_one_on_open() {
        let temp = TempDir::new().expect("tempdir");
        let dir = temp.path();
        {
            let (mut store, _) = open(dir, small_segments());
            for index in 1..=10 {
                append_flushed(&mut store, vec![entry(1, index)])
                    .await
                    .expect("append");
            }
            store
                .save_committed(Some(log_id(1, 8)))
                .await
                .expect("committed");
            store.close().await;
        }
        let (last_sequence, _) = *list_segments(dir)
            .expect("listed")
            .last()
            .expect("segments");
        File::create_new(segment_path(dir, last_sequence + 1)).expect("empty segment");

        {
            let (mut store, report) = open(dir, LogStoreOptions::default());
            assert!(!report.repaired(), "an empty segment is not damage");
            append_flushed(&mut store, entries(1, 11..=12))
                .await
                .expect("append");
            store.purge(log_id(1, 12)).await.expect("purge");
            assert_eq!(segment_files(dir).len(), 1, "older segments deleted");
            store.close().await;
        }
        let (mut store, _) = open(dir, LogStoreOptions::default());
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 8))
        );
        assert_eq!(
            store.get_log_state().await.expect("state").last_log_id,
            Some(log_id(1, 12))
        );
    }

    #[tokio::test]
    async fn queued_appends_share_one_flush() {
        let temp = TempDir::new().expect("tempdir");
        let (mut store, _) = open(temp.path(), LogStoreOptions::default());
        append_flushed(&mut store, vec![entry(1, 1)])
            .await
            .expect("append");
        let before = store.metrics();

        let resume = store.pause_writer().await;
        let mut pending = Vec::new();
        for index in 2..=65 {
            let (sender, flushed) = TypeConfig::oneshot();
            store
                .append(vec![entry(1, index)], IOFlushed::signal(sender))
                .await
                .expect("append queued");
            pending.push(flushed);
        }
        assert_eq!(
            read_all(&mut store).await.len(),
            65,
            "readable before the flush"
        );
        for flushed in &mut pending {
            assert!(flushed.try_recv().is_err(), "no callback before the flush");
        }
        resume.send(()).expect("writer is paused");
        for flushed in pending {
            flushed.await.expect("callback").expect("flushed");
        }

        let after = store.metrics();
        assert_eq!(after.appends_flushed - before.appends_flushed, 64);
        assert_eq!(
            after.segment_syncs - before.segment_syncs,
            1,
            "64 appends, one fdatasync"
        );
    }

    #[tokio::test]
    async fn vote_waits_for_queued_appends() {
        let temp = TempDir::new().expect("tempdir");
        let (mut store, _) = open(temp.path(), LogStoreOptions::default());
        let (sender, mut flushed) = TypeConfig::oneshot();
        store
            .append(entries(1, 1..=3), IOFlushed::signal(sender))
            .await
            .expect("append");
        store.save_vote(&Vote::new(1, 1)).await.expect("vote");
        // The append preceded the vote, so its flush completed before the vote returned.
        assert!(matches!(flushed.try_recv(), Ok(Ok(()))));
    }

    /// What the log must contain, kept the simplest way possible.
    #[derive(Debug, Default)]
    struct Model {
        entries: Vec<Entry>,
        purged: Option<LogId>,
        committed: Option<LogId>,
        term: u64,
    }

    impl Model {
        fn last_index(&self) -> Option<u64> {
            self.entries
                .last()
                .map(|entry| entry.index())
                .or(self.purged.as_ref().map(|purged| purged.index()))
        }

        async fn check(&self, store: &mut LogStore, seed: u64, step: usize) {
            let context = format!("seed {seed}, step {step}");
            assert_eq!(read_all(store).await, self.entries, "{context}: entries");
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id, self.purged, "{context}: purged");
            let last = self
                .entries
                .last()
                .map(|entry| entry.log_id())
                .or(self.purged);
            assert_eq!(state.last_log_id, last, "{context}: last log id");
            assert_eq!(
                store.read_committed().await.expect("committed"),
                self.committed,
                "{context}: committed"
            );
        }
    }

    /// Random appends, truncations, purges and commits over tiny segments, reopening now and
    /// then: the reopened log always equals the model. Deletion of purged segments and the
    /// segment headers are what this exercises; a failure names its seed.
    #[tokio::test]
    async fn random_operations_survive_reopen() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let temp = TempDir::new().expect("tempdir");
            let options = LogStoreOptions {
                segment_max_bytes: 200 + rng.random_range(0..400),
                ..LogStoreOptions::default()
            };
            let (mut store, _) = open(temp.path(), options.clone());
            let mut model = Model {
                term: 1,
                ..Model::default()
            };
            let mut segments_deleted = 0;

            for step in 0..150 {
                match rng.random_range(0..100) {
                    0..55 => {
                        let first = model.last_index().map_or(1, |last| last + 1);
                        let count = rng.random_range(1..=4);
                        let batch = entries(model.term, first..=first + count - 1);
                        append_flushed(&mut store, batch.clone())
                            .await
                            .expect("append");
                        model.entries.extend(batch);
                    }
                    55..65 if !model.entries.is_empty() => {
                        let keep = rng.random_range(0..model.entries.len());
                        let last_kept = match keep {
                            0 => model.purged,
                            keep => Some(model.entries[keep - 1].log_id()),
                        };
                        if last_kept.is_none() && model.purged.is_some() {
                            continue;
                        }
                        store.truncate_after(last_kept).await.expect("truncate");
                        model.entries.truncate(keep);
                        model.term += 1;
                    }
                    65..80 if !model.entries.is_empty() => {
                        let upto = rng.random_range(0..model.entries.len());
                        let upto_id = model.entries[upto].log_id();
                        store.purge(upto_id).await.expect("purge");
                        model.entries.drain(..=upto);
                        model.purged = Some(upto_id);
                    }
                    80..90 if !model.entries.is_empty() => {
                        let at = rng.random_range(0..model.entries.len());
                        let committed = Some(model.entries[at].log_id());
                        store.save_committed(committed).await.expect("committed");
                        model.committed = committed;
                    }
                    90..100 => {
                        segments_deleted += store.metrics().segments_deleted;
                        store.close().await;
                        let (reopened, report) = open(temp.path(), options.clone());
                        assert!(
                            !report.repaired(),
                            "seed {seed}, step {step}: clean close needs no repair"
                        );
                        store = reopened;
                        model.check(&mut store, seed, step).await;
                    }
                    _ => {}
                }
            }
            model.check(&mut store, seed, usize::MAX).await;
            segments_deleted += store.metrics().segments_deleted;
            assert!(segments_deleted > 0, "seed {seed}: purges deleted segments");
            store.close().await;
            let (mut store, _) = open(temp.path(), options);
            model.check(&mut store, seed, usize::MAX).await;
            store.close().await;
        }
    }

    // -----------------------------------------------------------------------------------------
    // openraft's storage conformance suite

    /// Test scaffolding, not the real state machine: it remembers only what the storage suite
    /// inspects (last applied id and last membership) so the suite can exercise the log store.
    #[derive(Debug, Clone, Default)]
    struct SuiteOnlyStateMachine {
        state: Arc<Mutex<SuiteOnlyState>>,
    }

    #[derive(Debug, Default)]
    struct SuiteOnlyState {
        applied: SuiteOnlySnapshotData,
        snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    struct SuiteOnlySnapshotData {
        last_applied: Option<LogId>,
        last_membership: StoredMembership,
    }

    impl SuiteOnlyStateMachine {
        fn state(&self) -> io::Result<MutexGuard<'_, SuiteOnlyState>> {
            self.state
                .lock()
                .map_err(|_| io::Error::other("suite state machine poisoned"))
        }
    }

    impl RaftSnapshotBuilder<TypeConfig> for SuiteOnlyStateMachine {
        type SnapshotData = Cursor<Vec<u8>>;

        async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>> {
            let mut state = self.state()?;
            let data = postcard::to_stdvec(&state.applied).map_err(io::Error::other)?;
            let meta = SnapshotMeta {
                last_log_id: state.applied.last_applied,
                last_membership: state.applied.last_membership.clone(),
            };
            state.snapshot = Some((meta.clone(), data.clone()));
            Ok(SnapshotOf::<TypeConfig, _> {
                meta,
                snapshot: Cursor::new(data),
            })
        }
    }

    impl RaftStateMachine<TypeConfig> for SuiteOnlyStateMachine {
        type SnapshotData = Cursor<Vec<u8>>;
        type SnapshotBuilder = Self;

        async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
            let state = self.state()?;
            Ok((
                state.applied.last_applied,
                state.applied.last_membership.clone(),
            ))
        }

        async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
        where
            Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
        {
            while let Some((entry, responder)) = entries.try_next().await? {
                {
                    let mut state = self.state()?;
                    state.applied.last_applied = Some(entry.log_id);
                    if let EntryPayload::Membership(membership) = &entry.payload {
                        state.applied.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                    }
                }
                if let Some(responder) = responder {
                    responder.send(CommandResponse::default());
                }
            }
            Ok(())
        }

        async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
            self.clone()
        }

        async fn install_snapshot(
            &mut self,
            meta: &SnapshotMeta,
            snapshot: Cursor<Vec<u8>>,
        ) -> io::Result<()> {
            let data = snapshot.into_inner();
            let applied: SuiteOnlySnapshotData =
                postcard::from_bytes(&data).map_err(io::Error::other)?;
            let mut state = self.state()?;
            state.applied = applied;
            state.snapshot = Some((meta.clone(), data));
            Ok(())
        }

        async fn get_current_snapshot(
            &mut self,
        ) -> io::Result<Option<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>> {
            let state = self.state()?;
            Ok(state
                .snapshot
                .as_ref()
                .map(|(meta, data)| SnapshotOf::<TypeConfig, _> {
                    meta: meta.clone(),
                    snapshot: Cursor::new(data.clone()),
                }))
        }
    }

    /// Each suite case gets a fresh log in its own temporary directory (with tiny segments, so
    /// rotation is exercised too).
    struct LogStoreSuiteBuilder;

    impl StoreBuilder<TypeConfig, LogStore, SuiteOnlyStateMachine, TempDir> for LogStoreSuiteBuilder {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, SuiteOnlyStateMachine), StorageError<TypeConfig>> {
            let temp =
                TempDir::new().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
            let (store, _) = LogStore::open(temp.path().join("raft-log"), small_segments())
                .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
            Ok((temp, store, SuiteOnlyStateMachine::default()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        Suite::test_all(LogStoreSuiteBuilder)
            .await
            .expect("storage suite");
    }
}
