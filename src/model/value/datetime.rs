//! Dates, times, timestamps and intervals in PostgreSQL's ISO DateStyle and
//! `IntervalStyle = postgres` output, with the civil-date arithmetic done here
//! (proleptic Gregorian calendar, astronomical years: 1 BC is year 0).

use super::Reason;

/// A date: days since 1970-01-01, or one of PostgreSQL's infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DateValue {
    NegInfinity,
    Finite(i32),
    PosInfinity,
}

/// A timestamp: microseconds since 1970-01-01 00:00:00 (UTC for timestamptz), or one
/// of PostgreSQL's infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimestampValue {
    NegInfinity,
    Finite(i64),
    PosInfinity,
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Days from 1970-01-01 to the given proleptic Gregorian date (astronomical year,
/// month 1..=12, day 1..=31); Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (astronomical year, month, day) of a day count from
/// 1970-01-01; Howard Hinnant's `civil_from_days`, the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
                                  // Both in range by construction (day 1..=31, month 1..=12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte cursor over ASCII-structured text; never slices a `str`.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            b: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), Reason> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {what} at byte {}", self.pos))
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn rest_is(&self, s: &str) -> bool {
        self.b.get(self.pos..) == Some(s.as_bytes())
    }

    /// `min..=max` decimal digits as a number (at most 18 digits, so no overflow).
    fn number(&mut self, min: usize, max: usize, what: &str) -> Result<i64, Reason> {
        let start = self.pos;
        let mut value: i64 = 0;
        while self.pos - start < max.min(18) {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    value = value * 10 + i64::from(d - b'0');
                    self.pos += 1;
                }
                _ => break,
            }
        }
        let n = self.pos - start;
        if n < min || matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(format!("expected {what} at byte {start}"));
        }
        Ok(value)
    }

    /// Fractional seconds after a `.`: 1 to 6 digits, as microseconds.
    fn fraction(&mut self) -> Result<i64, Reason> {
        let start = self.pos;
        let mut micros = 0;
        let mut n = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if n == 6 {
                return Err("more than 6 fractional digits".into());
            }
            micros = micros * 10 + i64::from(d - b'0');
            n += 1;
            self.pos += 1;
        }
        if n == 0 {
            return Err(format!("expected fractional seconds at byte {start}"));
        }
        for _ in n..6 {
            micros *= 10;
        }
        Ok(micros)
    }
}

const ISO_HINT: &str = "expected ISO DateStyle output like 2026-01-16, 10:00:00.5 or \
                        2026-01-16 10:00:00+05:30 (the replication session must use DateStyle=ISO)";

/// date: `2026-01-16`, `0044-03-15 BC`, `10000-01-01`, `infinity`, `-infinity`.
pub(super) fn parse_date(text: &str) -> Result<DateValue, Reason> {
    match text {
        "infinity" | "+infinity" => return Ok(DateValue::PosInfinity),
        "-infinity" => return Ok(DateValue::NegInfinity),
        _ => {}
    }
    let mut c = Cursor::new(text);
    let (year, month, day) = ymd(&mut c)?;
    let year = era(&mut c, year)?;
    if !c.at_end() {
        return Err(format!("unexpected text at byte {}; {ISO_HINT}", c.pos));
    }
    let days = checked_days(year, month, day)?;
    i32::try_from(days)
        .map(DateValue::Finite)
        .map_err(|_| "date out of range".into())
}

/// `YYYY-MM-DD` (4 or more year digits) as (year of era, month, day).
fn ymd(c: &mut Cursor) -> Result<(i64, u32, u32), Reason> {
    let parts = |c: &mut Cursor| -> Result<(i64, i64, i64), Reason> {
        let year = c.number(4, 9, "a year")?;
        c.expect(b'-', "'-' after the year")?;
        let month = c.number(2, 2, "a month")?;
        c.expect(b'-', "'-' after the month")?;
        let day = c.number(2, 2, "a day")?;
        Ok((year, month, day))
    };
    let (year, month, day) = parts(c).map_err(|e| format!("{e}; {ISO_HINT}"))?;
    // Both fit: at most 2 digits each.
    Ok((year, month as u32, day as u32))
}

/// An optional ` BC` suffix: turns the year of era into an astronomical year.
fn era(c: &mut Cursor, year: i64) -> Result<i64, Reason> {
    if c.rest_is(" BC") {
        c.pos += 3;
        if year == 0 {
            return Err("year 0 BC does not exist".into());
        }
        Ok(1 - year)
    } else {
        if year == 0 {
            return Err("year 0 does not exist (1 BC precedes 1 AD)".into());
        }
        Ok(year)
    }
}

fn checked_days(year: i64, month: u32, day: u32) -> Result<i64, Reason> {
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!("day {day} out of range for the month"));
    }
    Ok(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight, up to `24:00:00`.
fn time_of_day(c: &mut Cursor) -> Result<i64, Reason> {
    let hour = c
        .number(2, 2, "an hour")
        .map_err(|e| format!("{e}; {ISO_HINT}"))?;
    c.expect(b':', "':' after the hour")?;
    let minute = c.number(2, 2, "minutes")?;
    c.expect(b':', "':' after the minutes")?;
    let second = c.number(2, 2, "seconds")?;
    let fraction = if c.eat(b'.') { c.fraction()? } else { 0 };
    // A leap second (60) is what PostgreSQL's input accepts; its output never has one.
    if minute > 59 || second > 60 {
        return Err("minutes or seconds out of range".into());
    }
    let micros = ((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + fraction;
    if micros > MICROS_PER_DAY {
        return Err("time of day beyond 24:00:00".into());
    }
    Ok(micros)
}

/// A UTC offset: `+05`, `-03:30`, `+00:19:32`, as seconds east of Greenwich.
fn utc_offset(c: &mut Cursor) -> Result<i32, Reason> {
    let sign = match c.peek() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => {
            return Err(format!(
                "expected a UTC offset (+hh[:mm[:ss]]) at byte {}",
                c.pos
            ))
        }
    };
    c.pos += 1;
    let hours = c.number(2, 2, "offset hours")?;
    let (mut minutes, mut seconds) = (0, 0);
    if c.eat(b':') {
        minutes = c.number(2, 2, "offset minutes")?;
        if c.eat(b':') {
            seconds = c.number(2, 2, "offset seconds")?;
        }
    }
    if minutes > 59 || seconds > 59 {
        return Err("offset minutes or seconds out of range".into());
    }
    // At most 99:59:59, so it fits.
    Ok(sign * (hours * 3600 + minutes * 60 + seconds) as i32)
}

/// time: `10:00:00`, `23:59:59.999999`, `24:00:00`.
pub(super) fn parse_time(text: &str) -> Result<i64, Reason> {
    let mut c = Cursor::new(text);
    let micros = time_of_day(&mut c)?;
    if !c.at_end() {
        return Err(format!("unexpected text at byte {}", c.pos));
    }
    Ok(micros)
}

/// timetz: `10:00:00.5+05:30`, `10:00:00-03:00:15`, as (local micros, offset seconds).
pub(super) fn parse_timetz(text: &str) -> Result<(i64, i32), Reason> {
    let mut c = Cursor::new(text);
    let micros = time_of_day(&mut c)?;
    let offset = utc_offset(&mut c)?;
    if !c.at_end() {
        return Err(format!("unexpected text at byte {}", c.pos));
    }
    Ok((micros, offset))
}

/// timestamp / timestamptz: `2026-01-16 10:00:00.123456`, `0044-03-15 10:00:00 BC`,
/// `2026-01-16 10:00:00+05:30`, `0044-03-15 10:19:32+00:19:32 BC`, `±infinity`.
/// With `with_zone`, the offset is required and the result is UTC.
pub(super) fn parse_timestamp(text: &str, with_zone: bool) -> Result<TimestampValue, Reason> {
    match text {
        "infinity" | "+infinity" => return Ok(TimestampValue::PosInfinity),
        "-infinity" => return Ok(TimestampValue::NegInfinity),
        _ => {}
    }
    let mut c = Cursor::new(text);
    let (year, month, day) = ymd(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return Err(format!("expected a space before the time; {ISO_HINT}"));
    }
    let time = time_of_day(&mut c)?;
    let offset = if with_zone { utc_offset(&mut c)? } else { 0 };
    let year = era(&mut c, year)?;
    if !c.at_end() {
        return Err(format!("unexpected text at byte {}", c.pos));
    }
    let days = checked_days(year, month, day)?;
    // Years have at most 9 digits, so this stays far inside i128.
    let micros = i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(time)
        - i128::from(offset) * i128::from(MICROS_PER_SECOND);
    i64::try_from(micros)
        .map(TimestampValue::Finite)
        .map_err(|_| {
            "timestamp out of range: beyond ±2^63 microseconds from 1970-01-01 \
             (PostgreSQL's range ends in 294276, this one in 294247)"
                .into()
        })
}

const INTERVAL_HINT: &str = "expected IntervalStyle=postgres output like \
                             '1 year 2 mons -3 days +04:05:06.789'";

/// interval in `IntervalStyle = postgres`: `1 year 2 mons 3 days 04:05:06.789`,
/// `-1 days +02:03:00`, `-00:00:01`, `1000000:00:00`, as (months, days, micros).
pub(super) fn parse_interval(text: &str) -> Result<(i32, i32, i64), Reason> {
    let mut months: i64 = 0;
    let mut days: i64 = 0;
    let mut micros: i128 = 0;
    let mut seen_time = false;
    let mut seen_any = false;
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    while let Some(word) = words.next() {
        if seen_time {
            return Err(format!("unexpected text after the time; {INTERVAL_HINT}"));
        }
        seen_any = true;
        if word.contains(':') {
            micros = interval_time(word)?;
            seen_time = true;
            continue;
        }
        let n =
            signed_number(word).ok_or_else(|| format!("unexpected {word:?}; {INTERVAL_HINT}"))?;
        let unit = words
            .next()
            .ok_or_else(|| format!("a number without a unit; {INTERVAL_HINT}"))?;
        let (target, factor) = match unit {
            "year" | "years" => (&mut months, 12),
            "mon" | "mons" => (&mut months, 1),
            "day" | "days" => (&mut days, 1),
            _ => return Err(format!("unknown unit {unit:?}; {INTERVAL_HINT}")),
        };
        *target = n
            .checked_mul(factor)
            .and_then(|v| target.checked_add(v))
            .ok_or("interval out of range")?;
    }
    if !seen_any {
        return Err(format!("empty interval; {INTERVAL_HINT}"));
    }
    let months = i32::try_from(months).map_err(|_| "interval months out of range")?;
    let days = i32::try_from(days).map_err(|_| "interval days out of range")?;
    let micros = i64::try_from(micros).map_err(|_| "interval time out of range")?;
    Ok((months, days, micros))
}

/// `-12`, `+3`, `7` (at most 18 digits).
fn signed_number(word: &str) -> Option<i64> {
    let (negative, digits) = match word.as_bytes().first()? {
        b'-' => (true, &word[1..]),
        b'+' => (false, &word[1..]),
        _ => (false, word),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(if negative { -n } else { n })
}

/// The time part of an interval: `[+-]H+:MM:SS[.ffffff]`, hours unbounded by a day.
fn interval_time(word: &str) -> Result<i128, Reason> {
    let mut c = Cursor::new(word);
    let negative = if c.eat(b'-') {
        true
    } else {
        c.eat(b'+');
        false
    };
    let hours = c.number(1, 18, "hours")?;
    c.expect(b':', "':' after the hours")?;
    let minutes = c.number(2, 2, "minutes")?;
    c.expect(b':', "':' after the minutes")?;
    let seconds = c.number(2, 2, "seconds")?;
    let fraction = if c.eat(b'.') { c.fraction()? } else { 0 };
    if !c.at_end() {
        return Err(format!("unexpected text in the time {word:?}"));
    }
    if minutes > 59 || seconds > 59 {
        return Err("minutes or seconds out of range".into());
    }
    let micros = ((i128::from(hours) * 60 + i128::from(minutes)) * 60 + i128::from(seconds))
        * i128::from(MICROS_PER_SECOND)
        + i128::from(fraction);
    Ok(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10957);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
        assert_eq!(days_from_civil(-4, 2, 29), -720_930);
        for days in (-800_000..800_000)
            .step_by(7)
            .chain([i32::MIN as i64, i32::MAX as i64])
        {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn dates_match_postgres() {
        // `d - '1970-01-01'::date` from PostgreSQL 15.
        let cases = [
            ("2026-01-16", 20469),
            ("0044-03-15 BC", -735_160),
            ("4713-11-24 BC", -2_440_222),
            ("5874897-12-31", 2_145_042_905),
            ("0001-01-01 BC", -719_528),
            ("0001-01-01", -719_162),
            ("2000-02-29", 11016),
            ("1900-03-01", -25508),
            ("10000-01-01", 2_932_897),
            ("0005-02-29 BC", -720_930),
            ("294276-12-31", 106_762_939),
            ("1970-01-01", 0),
        ];
        for (text, days) in cases {
            assert_eq!(parse_date(text), Ok(DateValue::Finite(days)), "{text}");
        }
        assert_eq!(parse_date("infinity"), Ok(DateValue::PosInfinity));
        assert_eq!(parse_date("-infinity"), Ok(DateValue::NegInfinity));
    }

    #[test]
    fn bad_dates() {
        for text in [
            "",
            "2026-1-16",
            "26-01-16",
            "2026-02-29",
            "1900-02-29",
            "0004-02-29 BC",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-01-00",
            "0000-01-01",
            "0000-01-01 BC",
            "2026-01-16 AD",
            "2026-01-16 BC ",
            "01/16/2026",
            "Fri Jan 16 2026",
            "99999999999-01-01",
            "2026-01-16x",
            "Infinity",
        ] {
            assert!(parse_date(text).is_err(), "{text:?}");
        }
        assert!(parse_date("2026/01/16").unwrap_err().contains("DateStyle"));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("00:00:00"), Ok(0));
        assert_eq!(parse_time("10:00:00.5"), Ok(36_000_500_000));
        assert_eq!(parse_time("23:59:59.999999"), Ok(86_399_999_999));
        assert_eq!(parse_time("24:00:00"), Ok(86_400_000_000));
        assert_eq!(parse_time("12:34:56.000001"), Ok(45_296_000_001));
        for text in [
            "24:00:00.000001",
            "25:00:00",
            "10:60:00",
            "10:00:61",
            "10:00",
            "1:00:00",
            "10:00:00.",
            "10:00:00.1234567",
            "10:00:00+00",
            "10:00:00 ",
            "",
        ] {
            assert!(parse_time(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn timetz() {
        assert_eq!(
            parse_timetz("10:00:00.5+05:30"),
            Ok((36_000_500_000, 19800))
        );
        assert_eq!(
            parse_timetz("10:00:00-03:00:15"),
            Ok((36_000_000_000, -10815))
        );
        assert_eq!(parse_timetz("24:00:00+00"), Ok((86_400_000_000, 0)));
        assert_eq!(parse_timetz("00:00:00+15:59"), Ok((0, 57540)));
        assert_eq!(parse_timetz("00:00:00-15:59"), Ok((0, -57540)));
        for text in [
            "10:00:00",
            "10:00:00+5",
            "10:00:00+05:3",
            "10:00:00+05:60",
            "10:00:00Z",
        ] {
            assert!(parse_timetz(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn timestamps_match_postgres() {
        // extract(epoch from t) * 1e6 from PostgreSQL 15.
        let cases = [
            ("2026-01-16 10:00:00.123456", 1_768_557_600_123_456),
            ("0044-03-15 10:00:00 BC", -63_517_788_000_000_000),
            ("4713-11-24 00:00:00 BC", -210_835_180_800_000_000),
            ("1969-12-31 23:59:59.999999", -1),
            ("1970-01-01 00:00:00", 0),
            ("2026-01-16T10:00:00", 1_768_557_600_000_000),
            ("294247-01-10 04:00:54.775807", i64::MAX),
            ("290309-12-21 19:59:05.224192 BC", i64::MIN),
        ];
        for (text, micros) in cases {
            assert_eq!(
                parse_timestamp(text, false),
                Ok(TimestampValue::Finite(micros)),
                "{text}"
            );
        }
        assert_eq!(
            parse_timestamp("infinity", false),
            Ok(TimestampValue::PosInfinity)
        );
        assert_eq!(
            parse_timestamp("-infinity", true),
            Ok(TimestampValue::NegInfinity)
        );
    }

    #[test]
    fn timestamptz_match_postgres() {
        // Printed by PostgreSQL 15 under TimeZone Asia/Kolkata, Europe/Amsterdam (local
        // mean time before 1937) and America/St_Johns.
        let cases = [
            ("2026-01-16 15:30:00+05:30", 1_768_557_600_000_000),
            ("2026-01-16 10:00:00+00", 1_768_557_600_000_000),
            ("1900-01-01 00:19:32+00:19:32", -2_208_988_800_000_000),
            ("0044-03-15 10:19:32+00:19:32 BC", -63_517_788_000_000_000),
            ("2026-07-01 14:00:00.5+02", 1_782_907_200_500_000),
            ("2026-01-16 06:30:00.5-03:30", 1_768_557_600_500_000),
            ("2026-01-16 07:00:00-03:00:00", 1_768_557_600_000_000),
        ];
        for (text, micros) in cases {
            assert_eq!(
                parse_timestamp(text, true),
                Ok(TimestampValue::Finite(micros)),
                "{text}"
            );
        }
        for text in [
            "2026-01-16 10:00:00",
            "2026-01-16 10:00:00 UTC",
            "2026-01-16 10:00:00+00 AD",
            "2026-01-16 10:00:00 BC+00",
            "2026-01-16",
        ] {
            assert!(parse_timestamp(text, true).is_err(), "{text:?}");
        }
        for text in [
            "2026-01-16 10:00:00+00",
            "2026-01-16  10:00:00",
            "2026-01-16 10:00:00.1234567",
        ] {
            assert!(parse_timestamp(text, false).is_err(), "{text:?}");
        }
    }

    #[test]
    fn timestamp_out_of_i64() {
        // PostgreSQL counts from 2000 and reaches 294276-12-31; counted from 1970, the
        // last 30 years of its range do not fit in i64 microseconds.
        let err = parse_timestamp("294276-12-31 23:59:59.999999", false).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        assert!(parse_timestamp("294247-01-10 04:00:54.775808", false).is_err());
        assert!(parse_timestamp("294247-01-10 04:00:54.775807-00:00:01", true).is_err());
        assert!(parse_timestamp("999999999-12-31 00:00:00", false).is_err());
        assert!(parse_timestamp("999999999-12-31 00:00:00 BC", false).is_err());
    }

    #[test]
    fn intervals_match_postgres() {
        // Printed by PostgreSQL 15 with IntervalStyle postgres.
        let micros = |h: i64, m: i64, s: i64, us: i64| ((h * 60 + m) * 60 + s) * 1_000_000 + us;
        let cases = [
            (
                "1 year 2 mons 3 days 04:05:06.789",
                (14, 3, micros(4, 5, 6, 789_000)),
            ),
            ("-1 days +02:03:00", (0, -1, micros(2, 3, 0, 0))),
            ("00:00:00", (0, 0, 0)),
            ("-00:00:01", (0, 0, -1_000_000)),
            ("3 days", (0, 3, 0)),
            ("1 mon", (1, 0, 0)),
            ("-1 years -2 mons", (-14, 0, 0)),
            ("1000000:00:00", (0, 0, micros(1_000_000, 0, 0, 0))),
            ("-178000000 years", (-2_136_000_000, 0, 0)),
            ("1 day -00:00:00.000001", (0, 1, -1)),
            ("1 year -00:00:01", (12, 0, -1_000_000)),
            ("-2147483648 days", (0, i32::MIN, 0)),
            ("2 years 00:00:01", (24, 0, 1_000_000)),
            ("-178956970 years -8 mons", (i32::MIN, 0, 0)),
            ("178956970 years 7 mons", (i32::MAX, 0, 0)),
            (
                "-1 years -2 mons +3 days -04:05:06",
                (-14, 3, -micros(4, 5, 6, 0)),
            ),
            ("1 day 01:00:00", (0, 1, micros(1, 0, 0, 0))),
            ("-1 days -01:00:00", (0, -1, -micros(1, 0, 0, 0))),
            ("36:00:00", (0, 0, micros(36, 0, 0, 0))),
            ("00:00:00.000001", (0, 0, 1)),
            ("-1 mons +1 day", (-1, 1, 0)),
            ("-2562047788:00:54.775808", (0, 0, i64::MIN)),
            ("2562047788:00:54.775807", (0, 0, i64::MAX)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_interval(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_intervals() {
        for text in [
            "",
            " ",
            "1",
            "1 week",
            "1 year 2",
            "P1Y2M",
            "@ 1 year",
            "00:00:00 1 day",
            "1 day 00:00",
            "178956971 years",
            "2147483648 days",
            "2562047788:00:54.775808",
            "1 day 00:60:00",
            "- days",
            "1.5 days",
            "99999999999999999999 days",
        ] {
            assert!(parse_interval(text).is_err(), "{text:?}");
        }
    }
}
