//! The Snowflake lease on disk: one small file in the node's data directory holding the Unix
//! millisecond that no issued ID's timestamp reaches.
//!
//! A write is atomic and durable: the new value goes to a temporary file, which is fsynced and
//! renamed over the old one, and the directory is fsynced so the rename survives a power
//! failure. A reader therefore sees the old value or the new one, never a torn mix. The content
//! is `snowflake-lease v1 <unix_ms>\n`; anything else is reported as corrupt rather than
//! guessed at, since a wrong value could make a restarted node reissue IDs.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ids::{HighWaterMark, IdError};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "snowflake-lease";

const HEADER: &str = "snowflake-lease v1 ";

/// The lease of one node, in `dir/snowflake-lease`.
#[derive(Debug, Clone)]
pub struct FileHighWaterMark {
    path: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
}

impl FileHighWaterMark {
    pub fn new(dir: &Path) -> FileHighWaterMark {
        FileHighWaterMark {
            path: dir.join(FILE_NAME),
            temp: dir.join(format!("{FILE_NAME}.tmp")),
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, unix_ms: u64) -> std::io::Result<()> {
        {
            let mut file = File::create(&self.temp)?;
            file.write_all(format!("{HEADER}{unix_ms}\n").as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&self.temp, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }
}

impl HighWaterMark for FileHighWaterMark {
    fn load(&self) -> Result<Option<u64>, IdError> {
        let corrupt = |detail: String| IdError::Corrupt {
            path: self.path.display().to_string(),
            detail,
        };
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        text.strip_prefix(HEADER)
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|digits| digits.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| corrupt(format!("unexpected content {text:?}")))
    }

    fn store(&self, unix_ms: u64) -> Result<(), IdError> {
        self.write(unix_ms).map_err(|source| IdError::Persist {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mark = FileHighWaterMark::new(dir.path());
        assert_eq!(mark.load().expect("absent is fine"), None);
        mark.store(1_767_225_600_000).expect("store");
        mark.store(1_767_225_602_000).expect("store again");
        assert_eq!(
            FileHighWaterMark::new(dir.path()).load().expect("load"),
            Some(1_767_225_602_000)
        );
        assert!(!dir.path().join("snowflake-lease.tmp").exists());
        for garbage in [
            "",
            "snowflake-lease v1 12",
            "17672256",
            "snowflake-lease v1 x\n",
        ] {
            std::fs::write(mark.path(), garbage).expect("write");
            assert!(
                matches!(mark.load(), Err(IdError::Corrupt { .. })),
                "{garbage:?} must be refused"
            );
        }
    }

    #[test]
    fn a_failed_store_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mark = FileHighWaterMark::new(&dir.path().join("missing"));
        assert!(matches!(mark.store(1), Err(IdError::Persist { .. })));
    }
}
