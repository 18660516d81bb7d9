//! PostgreSQL's `date`, `time`, `timestamp` and `timestamptz` on SQLite text.
//!
//! SQLite has no date types: the translator stores these values as ISO-8601 text in one
//! uniform form, the *stored form*:
//!
//! | type | stored form |
//! |---|---|
//! | `date` | `YYYY-MM-DD` |
//! | `time` | `HH:MM:SS[.ffffff]` |
//! | `timestamp` | `YYYY-MM-DD HH:MM:SS[.ffffff]` |
//! | `timestamptz` | the same, in UTC, without a zone |
//!
//! with the fraction's trailing zeros dropped (as PostgreSQL prints it, and as the dialect's
//! `now()` writes it). Because every field has a fixed width and the fraction only follows
//! the seconds, comparing two stored values as text orders them as instants; that is why every
//! way a value enters (casts, `now()`, parameters in text or binary) goes through
//! [`stored_form`] or [`from_binary`]. Years are limited to 0001–9999 for the same reason (a
//! fifth digit would sort wrong); `infinity` and `-infinity` sort after and before every date
//! as text, as they do in PostgreSQL.
//!
//! [`parse`] reads any accepted input (`T` or space between date and time, a zone `Z`, `UTC`,
//! `±HH`, `±HH:MM`, `±HHMM` — converted to UTC for `timestamptz`, ignored otherwise, as
//! PostgreSQL does) into PostgreSQL's binary quantity: days since 2000-01-01 for a date,
//! microseconds since 2000-01-01 00:00 for a timestamp, microseconds since midnight for a
//! time. Not accepted: PostgreSQL's other input styles (`Jan 5 2024`, `epoch`, `now`), BC
//! years, zone names, and SQLite's julian-day or unix-time numbers.

/// Which of the four types a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Date,
    Time,
    Timestamp,
    Timestamptz,
}

/// Why a text is not a value of its type; the SQLSTATEs are PostgreSQL's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// 22007 invalid_datetime_format.
    #[error("invalid input syntax")]
    Syntax,
    /// 22008 datetime_field_overflow.
    #[error("date/time field value out of range")]
    Range,
}

impl Invalid {
    pub fn sqlstate(self) -> &'static str {
        match self {
            Invalid::Syntax => "22007",
            Invalid::Range => "22008",
        }
    }
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;
const FIRST_DAY: Date = Date {
    year: 1,
    month: 1,
    day: 1,
};
const LAST_DAY: Date = Date {
    year: 9999,
    month: 12,
    day: 31,
};

/// `text` in the stored form of `kind` (see the module doc).
pub fn stored_form(text: &str, kind: Kind) -> Result<String, Invalid> {
    from_binary(parse(text, kind)?, kind)
}

/// `text` as PostgreSQL prints a value of `kind` with `DateStyle = ISO` and `TimeZone = UTC`:
/// the stored form, with `+00` after a `timestamptz`.
pub fn output_text(text: &str, kind: Kind) -> Result<String, Invalid> {
    let mut out = stored_form(text, kind)?;
    if kind == Kind::Timestamptz && !out.ends_with("infinity") {
        out.push_str("+00");
    }
    Ok(out)
}

/// PostgreSQL's binary quantity for `text` (see the module doc); `infinity` is `i64::MAX`
/// (`i32::MAX` for a date), `-infinity` the minimum.
pub fn parse(text: &str, kind: Kind) -> Result<i64, Invalid> {
    let text = text.trim();
    if kind != Kind::Time {
        let infinite = if text.eq_ignore_ascii_case("infinity") {
            Some(true)
        } else if text.eq_ignore_ascii_case("-infinity") {
            Some(false)
        } else {
            None
        };
        if let Some(positive) = infinite {
            return Ok(match (kind, positive) {
                (Kind::Date, true) => i32::MAX.into(),
                (Kind::Date, false) => i32::MIN.into(),
                (_, true) => i64::MAX,
                (_, false) => i64::MIN,
            });
        }
    }
    if kind == Kind::Time {
        let (micros, _zone) = parse_time(text)?;
        return Ok(micros);
    }
    let (date, rest) = parse_date(text)?;
    let days = date.days_since_epoch() - POSTGRES_EPOCH_DAYS;
    let rest = rest.trim_start_matches(['T', 't', ' ']);
    let (micros_of_day, zone_minutes) = if rest.is_empty() {
        (0, 0)
    } else {
        parse_time(rest)?
    };
    match kind {
        Kind::Date => Ok(days),
        Kind::Timestamptz => {
            Ok(days * MICROS_PER_DAY + micros_of_day - zone_minutes * 60 * MICROS_PER_SECOND)
        }
        _ => Ok(days * MICROS_PER_DAY + micros_of_day),
    }
}

/// The stored form of PostgreSQL's binary quantity `value` (see [`parse`]); out of the
/// supported years is [`Invalid::Range`].
pub fn from_binary(value: i64, kind: Kind) -> Result<String, Invalid> {
    let infinity = match kind {
        Kind::Date => (i64::from(i32::MAX), i64::from(i32::MIN)),
        Kind::Time => (i64::MAX, i64::MAX),
        Kind::Timestamp | Kind::Timestamptz => (i64::MAX, i64::MIN),
    };
    if kind != Kind::Time {
        if value == infinity.0 {
            return Ok("infinity".into());
        }
        if value == infinity.1 {
            return Ok("-infinity".into());
        }
    }
    let (days, micros_of_day) = match kind {
        Kind::Time => {
            // 24:00:00 is a valid time, as in PostgreSQL.
            if !(0..=MICROS_PER_DAY).contains(&value) {
                return Err(Invalid::Range);
            }
            return Ok(print_time(value));
        }
        Kind::Date => (value, 0),
        Kind::Timestamp | Kind::Timestamptz => (
            value.div_euclid(MICROS_PER_DAY),
            value.rem_euclid(MICROS_PER_DAY),
        ),
    };
    let epoch_days = days
        .checked_add(POSTGRES_EPOCH_DAYS)
        .ok_or(Invalid::Range)?;
    if !(FIRST_DAY.days_since_epoch()..=LAST_DAY.days_since_epoch()).contains(&epoch_days) {
        return Err(Invalid::Range);
    }
    let date = Date::from_days_since_epoch(epoch_days).print();
    Ok(match kind {
        Kind::Date => date,
        _ => format!("{date} {}", print_time(micros_of_day)),
    })
}

#[derive(Debug, Clone, Copy)]
struct Date {
    year: i64,
    month: u32,
    day: u32,
}

fn number(text: &str, digits: std::ops::RangeInclusive<usize>) -> Result<(u32, &str), Invalid> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    if !digits.contains(&len) {
        return Err(Invalid::Syntax);
    }
    let value = text[..len].parse::<u32>().map_err(|_| Invalid::Syntax)?;
    Ok((value, &text[len..]))
}

fn parse_date(text: &str) -> Result<(Date, &str), Invalid> {
    let (year, rest) = number(text, 4..=6)?;
    let rest = rest.strip_prefix('-').ok_or(Invalid::Syntax)?;
    let (month, rest) = number(rest, 1..=2)?;
    let rest = rest.strip_prefix('-').ok_or(Invalid::Syntax)?;
    let (day, rest) = number(rest, 1..=2)?;
    let date = Date {
        year: year.into(),
        month,
        day,
    };
    if !(1..=9999).contains(&date.year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(date.year, month)
    {
        return Err(Invalid::Range);
    }
    Ok((date, rest))
}

/// `HH:MM[:SS[.ffffff]]` and an optional zone (`Z`, `UTC`, `±HH`, `±HH:MM`, `±HHMM`): the
/// microseconds since midnight and the zone in minutes east of UTC.
fn parse_time(text: &str) -> Result<(i64, i64), Invalid> {
    let (hour, rest) = number(text, 1..=2)?;
    let rest = rest.strip_prefix(':').ok_or(Invalid::Syntax)?;
    let (minute, mut rest) = number(rest, 2..=2)?;
    let mut second = 0;
    let mut micros: i64 = 0;
    if let Some(after) = rest.strip_prefix(':') {
        let (s, after) = number(after, 2..=2)?;
        second = s;
        rest = after;
        if let Some(fraction) = rest.strip_prefix('.') {
            let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                return Err(Invalid::Syntax);
            }
            // Microsecond precision, the seventh digit rounding half up as PostgreSQL does.
            let digits = &fraction[..len];
            for (i, b) in digits.bytes().take(7).enumerate() {
                if i < 6 {
                    micros = micros * 10 + i64::from(b - b'0');
                } else if b >= b'5' {
                    micros += 1;
                }
            }
            for _ in digits.len()..6 {
                micros *= 10;
            }
            if micros >= MICROS_PER_SECOND {
                return Err(Invalid::Range);
            }
            rest = &fraction[len..];
        }
    }
    let total = ((i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second))
        * MICROS_PER_SECOND
        + micros;
    // A leap second (`23:59:60`) rolls over, as in PostgreSQL; 24:00:00 exactly is allowed.
    if hour > 24 || minute > 59 || second > 60 || total > MICROS_PER_DAY {
        return Err(Invalid::Range);
    }
    Ok((total, parse_zone(rest.trim())?))
}

/// A zone offset in minutes east of UTC.
fn parse_zone(zone: &str) -> Result<i64, Invalid> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") || zone.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, digits) = match zone.as_bytes()[0] {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return Err(Invalid::Syntax),
    };
    // `±HHMM`: split the four digits.
    let compact = digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit());
    let (hours, after) = if compact {
        (number(&digits[..2], 2..=2)?.0, &digits[2..])
    } else {
        number(digits, 1..=2)?
    };
    let after = after.strip_prefix(':').unwrap_or(after);
    let minutes = if after.is_empty() {
        0
    } else {
        let (minutes, after) = number(after, 2..=2)?;
        if !after.is_empty() {
            return Err(Invalid::Syntax);
        }
        minutes
    };
    if hours > 15 || minutes > 59 {
        return Err(Invalid::Range);
    }
    Ok(sign * i64::from(hours * 60 + minutes))
}

/// `HH:MM:SS[.ffffff]`, trailing zeros of the fraction dropped (PostgreSQL's output).
fn print_time(micros_of_day: i64) -> String {
    let seconds = micros_of_day / MICROS_PER_SECOND;
    let fraction = micros_of_day % MICROS_PER_SECOND;
    let mut out = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction != 0 {
        out.push('.');
        out.push_str(format!("{fraction:06}").trim_end_matches('0'));
    }
    out
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// Days since 1970-01-01 in the proleptic Gregorian calendar (era arithmetic: 400-year
    /// cycles of 146097 days, years starting in March so the leap day comes last).
    const fn days_since_epoch(&self) -> i64 {
        let year = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month = self.month as i64;
        let day_of_year =
            (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + self.day as i64 - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Date { year, month, day }
    }

    fn print(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_become_the_stored_form() {
        let cases = [
            ("2024-02-29", Kind::Date, "2024-02-29"),
            ("2024-3-5", Kind::Timestamp, "2024-03-05 00:00:00"),
            (
                "2024-01-01T01:30+02:00",
                Kind::Timestamp,
                "2024-01-01 01:30:00",
            ),
            (
                "2024-01-01 01:30:00.250+02",
                Kind::Timestamptz,
                "2023-12-31 23:30:00.25",
            ),
            (
                "2026-11-22T08:15:30.123456Z",
                Kind::Timestamptz,
                "2026-11-22 08:15:30.123456",
            ),
            (
                "2024-01-01 10:00:00-0530",
                Kind::Timestamptz,
                "2024-01-01 15:30:00",
            ),
            ("2024-01-01 12:00:00", Kind::Date, "2024-01-01"),
            ("23:59:60", Kind::Time, "24:00:00"),
            ("08:15:30.1000004", Kind::Time, "08:15:30.1"),
            (
                "2024-12-31 23:59:60",
                Kind::Timestamp,
                "2025-01-01 00:00:00",
            ),
            (" Infinity ", Kind::Timestamptz, "infinity"),
            ("-infinity", Kind::Date, "-infinity"),
        ];
        for (input, kind, stored) in cases {
            assert_eq!(stored_form(input, kind).as_deref(), Ok(stored), "{input}");
        }
        let refused = [
            ("2023-02-29", Kind::Date, Invalid::Range),
            ("0000-01-01", Kind::Date, Invalid::Range),
            ("10000-01-01", Kind::Timestamp, Invalid::Range),
            ("23:59:59.9999999", Kind::Time, Invalid::Range),
            ("25:00", Kind::Time, Invalid::Range),
            ("yesterday", Kind::Date, Invalid::Syntax),
            (
                "2024-01-01 10:00 Europe/Paris",
                Kind::Timestamptz,
                Invalid::Syntax,
            ),
            ("infinity", Kind::Time, Invalid::Syntax),
            ("1700000000", Kind::Timestamp, Invalid::Syntax),
        ];
        for (input, kind, why) in refused {
            assert_eq!(stored_form(input, kind), Err(why), "{input}");
        }
    }

    #[test]
    fn output_text_is_postgres_iso_in_utc() {
        assert_eq!(
            output_text("2026-11-22 10:15:30.123456+02", Kind::Timestamptz).as_deref(),
            Ok("2026-11-22 08:15:30.123456+00")
        );
        assert_eq!(
            output_text("2026-11-22T08:15:30.120", Kind::Timestamp).as_deref(),
            Ok("2026-11-22 08:15:30.12")
        );
        assert_eq!(
            output_text("infinity", Kind::Timestamptz).as_deref(),
            Ok("infinity")
        );
    }

    #[test]
    fn binary_quantities_count_from_2000() {
        assert_eq!(parse("2000-01-01", Kind::Date), Ok(0));
        assert_eq!(parse("1999-12-31", Kind::Date), Ok(-1));
        assert_eq!(
            parse("2000-01-02 00:00:01", Kind::Timestamp),
            Ok(86_401_000_000)
        );
        assert_eq!(
            parse("2000-01-01 01:00:00+01", Kind::Timestamptz),
            Ok(0),
            "the zone is subtracted"
        );
        assert_eq!(
            parse("2000-01-01 01:00:00+01", Kind::Timestamp),
            Ok(3_600_000_000)
        );
        assert_eq!(parse("00:00:01.5", Kind::Time), Ok(1_500_000));
        assert_eq!(
            from_binary(-1, Kind::Timestamp).as_deref(),
            Ok("1999-12-31 23:59:59.999999")
        );
        assert_eq!(
            from_binary(i64::MIN, Kind::Timestamptz).as_deref(),
            Ok("-infinity")
        );
        assert_eq!(
            from_binary(i64::MAX / 2, Kind::Timestamp),
            Err(Invalid::Range)
        );
        assert_eq!(
            from_binary(MICROS_PER_DAY + 1, Kind::Time),
            Err(Invalid::Range)
        );
        for text in [
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "2024-02-29 12:00:00.5",
        ] {
            let value = parse(text, Kind::Timestamp).expect("parses");
            assert_eq!(from_binary(value, Kind::Timestamp).as_deref(), Ok(text));
        }
    }

    #[test]
    fn stored_forms_sort_as_text_like_the_instants() {
        let inputs = [
            "-infinity",
            "0001-01-01",
            "1999-12-31 23:59:59.999999",
            "2000-01-01",
            "2000-01-01 00:00:00.000001",
            "2000-01-01 00:00:00.1",
            "2000-01-01 00:00:00.12",
            "2000-01-01 00:00:01",
            "9999-12-31 23:59:59",
            "infinity",
        ];
        let stored: Vec<String> = inputs
            .iter()
            .map(|t| stored_form(t, Kind::Timestamp).expect("valid"))
            .collect();
        let mut sorted = stored.clone();
        sorted.sort();
        assert_eq!(sorted, stored);
    }
}
