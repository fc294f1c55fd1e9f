//! WAL positions ([`Lsn`]) and PostgreSQL timestamps ([`PgTimestamp`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A WAL position (`pg_lsn`, `XLogRecPtr`): a byte offset into the write-ahead log.
///
/// Displays and parses in PostgreSQL's form: two hexadecimal numbers of at most eight
/// digits, the high and low 32 bits, separated by a slash (`16/B374D848`). Display uses
/// upper case and no leading zeros, as PostgreSQL does; parsing accepts either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, PostgreSQL's `InvalidXLogRecPtr`.
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is not `0/0`.
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(value: Lsn) -> Self {
        value.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a string is not an LSN in `X/X` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLsnError {
    input: String,
}

impl fmt::Display for ParseLsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid LSN {:?}: expected two hexadecimal numbers of 1 to 8 digits separated by '/'",
            self.input
        )
    }
}

impl std::error::Error for ParseLsnError {}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError {
            input: s.to_owned(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |part: &str| -> Result<u64, ParseLsnError> {
            let ok = (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(err());
            }
            u32::from_str_radix(part, 16)
                .map(u64::from)
                .map_err(|_| err())
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

/// Microseconds between the Unix epoch (1970-01-01) and PostgreSQL's epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL `TimestampTz` as sent on the wire: microseconds since 2000-01-01 00:00 UTC.
///
/// `i64::MAX` and `i64::MIN` are PostgreSQL's `infinity` and `-infinity`; conversions to
/// Unix time return `None` for them and for anything else that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Microseconds since the Unix epoch, or `None` for ±infinity and on overflow.
    pub fn to_unix_micros(self) -> Option<i64> {
        if self.0 == i64::MAX || self.0 == i64::MIN {
            return None;
        }
        self.0.checked_add(PG_EPOCH_OFFSET_MICROS)
    }

    /// The timestamp for a number of microseconds since the Unix epoch, or `None` when it
    /// does not fit.
    pub fn from_unix_micros(micros: i64) -> Option<PgTimestamp> {
        micros.checked_sub(PG_EPOCH_OFFSET_MICROS).map(PgTimestamp)
    }

    /// As a [`SystemTime`], or `None` for ±infinity and on overflow.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let unix = self.to_unix_micros()?;
        let magnitude = Duration::from_micros(unix.unsigned_abs());
        if unix >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// From a [`SystemTime`] (such as `SystemTime::now()` for a status update), truncated to
    /// whole microseconds; `None` when it does not fit.
    pub fn from_system_time(time: SystemTime) -> Option<PgTimestamp> {
        let unix = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).ok()?,
            Err(before) => {
                let micros = i64::try_from(before.duration().as_micros()).ok()?;
                micros.checked_neg()?
            }
        };
        PgTimestamp::from_unix_micros(unix)
    }
}
