//! The bit layout of a Snowflake ID and the arithmetic between IDs, their parts and wall-clock
//! time. Pure: no clock, no I/O.
//!
//! An ID is a non-negative `i64`, most significant bit first:
//!
//! ```text
//!  0 | timestamp (ticks since the epoch) | datacenter | worker | sequence
//! ```
//!
//! The default is Twitter's: 41 bits of milliseconds since 2024-01-01T00:00:00Z (69.7 years),
//! 5 bits of datacenter, 5 bits of worker, 12 bits of sequence (4,096 IDs per millisecond per
//! worker). Widths and the tick length are configurable; they must add up to 63 so that the sign
//! bit stays 0 and every ID fits a SQLite `INTEGER` and a PostgreSQL `int8`.

use chrono::{DateTime, SecondsFormat};

/// Bits of an ID below the sign bit.
pub const ID_BITS: u32 = 63;

/// A layout must last at least this long from the moment it is validated.
pub const MIN_LIFETIME_YEARS: u64 = 50;

const MS_PER_YEAR: u64 = 31_557_600_000; // 365.25 days

/// How IDs are built. Construct with [`Layout::new`], which validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    epoch_unix_ms: u64,
    tick_ms: u64,
    timestamp_bits: u32,
    datacenter_bits: u32,
    worker_bits: u32,
    sequence_bits: u32,
}

/// The fields of one ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdParts {
    /// Ticks since the epoch.
    pub tick: u64,
    pub datacenter: u64,
    pub worker: u64,
    pub sequence: u64,
}

/// The layout cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "the ID bit widths must add up to {ID_BITS} (timestamp {timestamp} + datacenter {datacenter} + worker {worker} + sequence {sequence} = {sum})"
    )]
    Widths {
        timestamp: u32,
        datacenter: u32,
        worker: u32,
        sequence: u32,
        sum: u32,
    },
    #[error("id_timestamp_bits and id_sequence_bits must be at least 1")]
    EmptyField,
    #[error("id_time_unit_ms must be at least 1")]
    ZeroTick,
    #[error("id_epoch {0:?} is not an RFC 3339 time at or after 1970 (e.g. 2024-01-01T00:00:00Z)")]
    Epoch(String),
    #[error("id_epoch {epoch} is in the future")]
    EpochInFuture { epoch: String },
    #[error(
        "the ID layout runs out at {ends}, less than {MIN_LIFETIME_YEARS} years from now: add timestamp bits or lengthen id_time_unit_ms"
    )]
    TooShort { ends: String },
}

impl Layout {
    /// A layout from its configuration, valid at `now_unix_ms`: widths add up to 63, the epoch
    /// is not in the future, and the timestamp lasts at least 50 years from now.
    pub fn new(
        epoch: &str,
        tick_ms: u64,
        [timestamp_bits, datacenter_bits, worker_bits, sequence_bits]: [u32; 4],
        now_unix_ms: u64,
    ) -> Result<Layout, LayoutError> {
        let sum = timestamp_bits
            .saturating_add(datacenter_bits)
            .saturating_add(worker_bits)
            .saturating_add(sequence_bits);
        if sum != ID_BITS {
            return Err(LayoutError::Widths {
                timestamp: timestamp_bits,
                datacenter: datacenter_bits,
                worker: worker_bits,
                sequence: sequence_bits,
                sum,
            });
        }
        if timestamp_bits == 0 || sequence_bits == 0 {
            return Err(LayoutError::EmptyField);
        }
        if tick_ms == 0 {
            return Err(LayoutError::ZeroTick);
        }
        let epoch_unix_ms = DateTime::parse_from_rfc3339(epoch)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
            .ok_or_else(|| LayoutError::Epoch(epoch.to_owned()))?;
        if epoch_unix_ms > now_unix_ms {
            return Err(LayoutError::EpochInFuture {
                epoch: epoch.to_owned(),
            });
        }
        let layout = Layout {
            epoch_unix_ms,
            tick_ms,
            timestamp_bits,
            datacenter_bits,
            worker_bits,
            sequence_bits,
        };
        let needed_until = now_unix_ms.saturating_add(MIN_LIFETIME_YEARS * MS_PER_YEAR);
        if layout.end_unix_ms() < needed_until {
            return Err(LayoutError::TooShort {
                ends: format_unix_ms(layout.end_unix_ms()),
            });
        }
        Ok(layout)
    }

    /// Largest value of each field.
    pub fn max_tick(&self) -> u64 {
        mask(self.timestamp_bits)
    }
    pub fn max_datacenter(&self) -> u64 {
        mask(self.datacenter_bits)
    }
    pub fn max_worker(&self) -> u64 {
        mask(self.worker_bits)
    }
    pub fn max_sequence(&self) -> u64 {
        mask(self.sequence_bits)
    }

    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    pub fn epoch_unix_ms(&self) -> u64 {
        self.epoch_unix_ms
    }

    /// The first millisecond the timestamp field can no longer express.
    pub fn end_unix_ms(&self) -> u64 {
        (self.max_tick() + 1)
            .saturating_mul(self.tick_ms)
            .saturating_add(self.epoch_unix_ms)
    }

    /// The most IDs one worker can issue per second: the layout's physical limit.
    pub fn ids_per_second_limit(&self) -> u64 {
        (self.max_sequence() + 1) * 1000 / self.tick_ms
    }

    /// The tick `unix_ms` falls in; `None` before the epoch.
    pub fn tick_of(&self, unix_ms: u64) -> Option<u64> {
        unix_ms
            .checked_sub(self.epoch_unix_ms)
            .map(|ms| ms / self.tick_ms)
    }

    /// The first tick starting at or after `unix_ms` (0 before the epoch).
    pub fn first_tick_from(&self, unix_ms: u64) -> u64 {
        unix_ms
            .saturating_sub(self.epoch_unix_ms)
            .div_ceil(self.tick_ms)
    }

    /// When `tick` begins, in Unix milliseconds.
    pub fn tick_start_unix_ms(&self, tick: u64) -> u64 {
        tick.saturating_mul(self.tick_ms)
            .saturating_add(self.epoch_unix_ms)
    }

    /// Packs `parts`; each field must fit its width (the generator guarantees it).
    pub fn encode(&self, parts: IdParts) -> u64 {
        debug_assert!(parts.tick <= self.max_tick());
        debug_assert!(parts.datacenter <= self.max_datacenter());
        debug_assert!(parts.worker <= self.max_worker());
        debug_assert!(parts.sequence <= self.max_sequence());
        let worker_shift = self.sequence_bits;
        let datacenter_shift = worker_shift + self.worker_bits;
        let tick_shift = datacenter_shift + self.datacenter_bits;
        (parts.tick << tick_shift)
            | (parts.datacenter << datacenter_shift)
            | (parts.worker << worker_shift)
            | parts.sequence
    }

    /// Unpacks an ID; `None` when the sign bit is set (no layout produces such an ID).
    pub fn decode(&self, id: u64) -> Option<IdParts> {
        if id >> ID_BITS != 0 {
            return None;
        }
        let worker_shift = self.sequence_bits;
        let datacenter_shift = worker_shift + self.worker_bits;
        let tick_shift = datacenter_shift + self.datacenter_bits;
        Some(IdParts {
            tick: (id >> tick_shift) & self.max_tick(),
            datacenter: (id >> datacenter_shift) & self.max_datacenter(),
            worker: (id >> worker_shift) & self.max_worker(),
            sequence: id & self.max_sequence(),
        })
    }

    /// `id` decoded as a JSON object: `timestamp` (RFC 3339, UTC, milliseconds),
    /// `timestamp_ms` (Unix milliseconds), `datacenter`, `worker`, `sequence`.
    /// `None` for a negative ID.
    pub fn decode_json(&self, id: i64) -> Option<serde_json::Value> {
        let parts = self.decode(u64::try_from(id).ok()?)?;
        let unix_ms = self.tick_start_unix_ms(parts.tick);
        Some(serde_json::json!({
            "timestamp": format_unix_ms(unix_ms),
            "timestamp_ms": unix_ms,
            "datacenter": parts.datacenter,
            "worker": parts.worker,
            "sequence": parts.sequence,
        }))
    }

    /// A one-line description, e.g. `41/5/5/12 bits, 1 ms ticks since 2024-01-01T00:00:00.000Z`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}/{} bits, {} ms ticks since {}",
            self.timestamp_bits,
            self.datacenter_bits,
            self.worker_bits,
            self.sequence_bits,
            self.tick_ms,
            format_unix_ms(self.epoch_unix_ms)
        )
    }
}

fn mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        u64::MAX >> (64 - bits)
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-01-01T00:00:00.000Z`.
pub fn format_unix_ms(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{unix_ms} ms after 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-01-01T00:00:00Z.
    const NOW: u64 = 1_767_225_600_000;

    fn default_layout() -> Layout {
        Layout::new("2024-01-01T00:00:00Z", 1, [41, 5, 5, 12], NOW).expect("default layout")
    }

    #[test]
    fn the_default_layout_is_twitters() {
        let layout = default_layout();
        assert_eq!(layout.epoch_unix_ms(), 1_704_067_200_000);
        assert_eq!(layout.ids_per_second_limit(), 4_096_000);
        assert_eq!(
            format_unix_ms(layout.end_unix_ms()),
            "2093-09-06T15:47:35.552Z"
        );
        let id = layout.encode(IdParts {
            tick: 1,
            datacenter: 2,
            worker: 3,
            sequence: 4,
        });
        assert_eq!(id, (1 << 22) | (2 << 17) | (3 << 12) | 4);
    }

    #[test]
    fn invalid_layouts_are_refused() {
        let epoch = "2024-01-01T00:00:00Z";
        assert!(matches!(
            Layout::new(epoch, 1, [41, 5, 5, 13], NOW),
            Err(LayoutError::Widths { sum: 64, .. })
        ));
        assert_eq!(
            Layout::new(epoch, 1, [51, 0, 12, 0], NOW),
            Err(LayoutError::EmptyField)
        );
        assert_eq!(
            Layout::new(epoch, 0, [41, 5, 5, 12], NOW),
            Err(LayoutError::ZeroTick)
        );
        assert!(matches!(
            Layout::new("yesterday", 1, [41, 5, 5, 12], NOW),
            Err(LayoutError::Epoch(_))
        ));
        assert!(matches!(
            Layout::new("2030-01-01T00:00:00Z", 1, [41, 5, 5, 12], NOW),
            Err(LayoutError::EpochInFuture { .. })
        ));
        // 40 bits of milliseconds last 34.8 years.
        assert!(matches!(
            Layout::new(epoch, 1, [40, 5, 5, 13], NOW),
            Err(LayoutError::TooShort { .. })
        ));
        // An old epoch eats into the lifetime: 41 bits from 1990 end in 2059.
        assert!(matches!(
            Layout::new("1990-01-01T00:00:00Z", 1, [41, 5, 5, 12], NOW),
            Err(LayoutError::TooShort { .. })
        ));
        // Sonyflake-style: 39 bits of 10 ms (174 years), 8 bits of sequence.
        let sony = Layout::new(epoch, 10, [39, 0, 16, 8], NOW).expect("sonyflake layout");
        assert_eq!(sony.ids_per_second_limit(), 25_600);
    }

    #[test]
    fn decode_json_names_every_field() {
        let layout = default_layout();
        let id = layout.encode(IdParts {
            tick: 1_000,
            datacenter: 1,
            worker: 7,
            sequence: 9,
        });
        let json = layout.decode_json(id as i64).expect("decodes");
        assert_eq!(
            json,
            serde_json::json!({
                "timestamp": "2024-01-01T00:00:01.000Z",
                "timestamp_ms": 1_704_067_201_000u64,
                "datacenter": 1,
                "worker": 7,
                "sequence": 9,
            })
        );
        assert_eq!(layout.decode_json(-1), None);
    }

    fn layouts() -> impl Strategy<Value = Layout> {
        // 41..=50 timestamp bits of 1..=10 ms ticks last 50 years from a 2024 epoch; at most
        // 12 datacenter and worker bits leave at least one sequence bit.
        (41u32..=50, 1u64..=10, 0u32..=6, 0u32..=6).prop_map(|(t, tick, d, w)| {
            Layout::new(
                "2024-01-01T00:00:00Z",
                tick,
                [t, d, w, ID_BITS - t - d - w],
                NOW,
            )
            .expect("valid layout")
        })
    }

    proptest! {
        /// decode(encode(x)) = x for every field value that fits, in every valid layout; and
        /// IDs order like their (tick, datacenter, worker, sequence) tuples.
        #[test]
        fn decode_inverts_encode(
            layout in layouts(),
            a in any::<[u64; 4]>(),
            b in any::<[u64; 4]>(),
        ) {
            let parts = |[t, d, w, s]: [u64; 4]| IdParts {
                tick: t & layout.max_tick(),
                datacenter: d & layout.max_datacenter(),
                worker: w & layout.max_worker(),
                sequence: s & layout.max_sequence(),
            };
            let (a, b) = (parts(a), parts(b));
            let (id_a, id_b) = (layout.encode(a), layout.encode(b));
            prop_assert!(id_a < 1 << ID_BITS);
            prop_assert_eq!(layout.decode(id_a), Some(a));
            prop_assert_eq!(id_a.cmp(&id_b), a.cmp(&b));
        }
    }
}
