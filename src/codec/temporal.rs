//! Date, time and interval values the way Debezium's PostgreSQL connector writes
//! them: ISO-8601 strings for timestamptz and timetz (`ZonedTimestamp`, `ZonedTime`),
//! its infinity sentinels, and interval microseconds (`MicroDuration`) or ISO strings
//! (`Interval`) computed as Debezium computes them from pgjdbc's `PGInterval`; pure.

use std::fmt::{self, Write};

use crate::model::value::civil_from_days;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// `infinity` in a timestamp column: pgjdbc's `DATE_POSITIVE_INFINITY` read as
/// microseconds (`PostgresValueConverter.POSITIVE_INFINITY_INSTANT`).
pub const TIMESTAMP_POSITIVE_INFINITY_MICROS: i64 = 9_223_372_036_825_200_000;
/// `-infinity` in a timestamp column.
pub const TIMESTAMP_NEGATIVE_INFINITY_MICROS: i64 = -9_223_372_036_832_400_000;
/// `infinity` in a date column: the epoch day of Debezium's
/// `POSITIVE_INFINITY_LOCAL_DATE` (-5877611-06-21), as odd as it looks.
pub const DATE_POSITIVE_INFINITY_DAYS: i32 = -2_147_472_692;
/// `-infinity` in a date column: the epoch day of -5877611-06-22.
pub const DATE_NEGATIVE_INFINITY_DAYS: i32 = -2_147_472_691;
/// `MicroDuration.DAYS_PER_MONTH_AVG`.
pub const DAYS_PER_MONTH_AVG: f64 = 365.25 / 12.0;

/// A string of at most 64 bytes built without allocating.
pub struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl StackStr {
    pub fn new() -> Self {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole UTF-8 strings.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl Default for StackStr {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `value` in decimal, zero-padded to at least `width` digits (at most 20). Written by
/// hand: `write!` with `{:02}` costs several times more, and timestamps are formatted
/// for every event (the envelope's and each timestamptz column's).
pub fn write_padded(out: &mut impl Write, value: u64, width: usize) -> fmt::Result {
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    let mut v = value;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = at.min(buf.len() - width.min(buf.len()));
    // Only ASCII digits were written.
    out.write_str(std::str::from_utf8(&buf[start..]).map_err(|_| fmt::Error)?)
}

/// Java's ISO year: 4 digits, a `+` above 9999, a `-` below zero.
fn write_year(out: &mut impl Write, year: i64) -> fmt::Result {
    if year > 9999 {
        out.write_char('+')?;
    } else if year < 0 {
        out.write_char('-')?;
    }
    write_padded(out, year.unsigned_abs(), 4)
}

/// `.` and exactly `width` digits of the nanoseconds (1..=9), or Java's
/// `ISO_LOCAL_TIME` fraction (nothing for zero, else without trailing zeros).
fn write_fraction(out: &mut impl Write, nanos: u32, width: i32) -> fmt::Result {
    if (1..=9).contains(&width) {
        let mut digits = StackStr::new();
        write_padded(&mut digits, u64::from(nanos), 9)?;
        out.write_char('.')?;
        out.write_str(&digits.as_str()[..width as usize])
    } else if nanos != 0 {
        let mut digits = StackStr::new();
        write_padded(&mut digits, u64::from(nanos), 9)?;
        out.write_char('.')?;
        out.write_str(digits.as_str().trim_end_matches('0'))
    } else {
        Ok(())
    }
}

fn write_time_of_day(out: &mut impl Write, micros_of_day: i64, fraction: i32) -> fmt::Result {
    let secs = micros_of_day / MICROS_PER_SECOND;
    let nanos = (micros_of_day % MICROS_PER_SECOND) as u32 * 1000;
    // micros_of_day is within one day here: never negative.
    let secs = secs.unsigned_abs();
    write_padded(out, secs / 3600, 2)?;
    out.write_char(':')?;
    write_padded(out, (secs / 60) % 60, 2)?;
    out.write_char(':')?;
    write_padded(out, secs % 60, 2)?;
    write_fraction(out, nanos, fraction)
}

/// `io.debezium.time.ZonedTimestamp` of a timestamptz (µs since the epoch, UTC):
/// `2016-11-04T11:51:30.123456Z`. `fraction` is the column's precision (6 without a
/// modifier): that many fraction digits always; 0 gives Java's shortest form.
pub fn write_zoned_timestamp(out: &mut impl Write, micros: i64, fraction: i32) -> fmt::Result {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    write_year(out, y)?;
    out.write_char('-')?;
    write_padded(out, u64::from(m), 2)?;
    out.write_char('-')?;
    write_padded(out, u64::from(d), 2)?;
    out.write_char('T')?;
    write_time_of_day(out, of_day, fraction)?;
    out.write_char('Z')
}

/// `io.debezium.time.ZonedTime` of a timetz: the time shifted to UTC,
/// `11:51:30.123789Z` (fraction without trailing zeros, none when zero).
pub fn write_zoned_time(
    out: &mut impl Write,
    local_micros: i64,
    offset_seconds: i32,
) -> fmt::Result {
    let utc =
        (local_micros - i64::from(offset_seconds) * MICROS_PER_SECOND).rem_euclid(MICROS_PER_DAY);
    write_time_of_day(out, utc, 0)?;
    out.write_char('Z')
}

/// An interval as pgjdbc's `PGInterval` holds it after parsing PostgreSQL's
/// `postgres`-style output: years and months split from the months, hours, minutes
/// and seconds (whole + fraction as a double) from the microseconds, every part
/// carrying the sign of its group.
struct PgIntervalParts {
    years: i64,
    months: i64,
    days: i64,
    hours: i64,
    minutes: i64,
    seconds: f64,
}

fn pg_interval_parts(months: i32, days: i32, micros: i64) -> PgIntervalParts {
    let months = i64::from(months);
    let hours = micros / 3_600_000_000;
    let rest = micros % 3_600_000_000;
    let minutes = rest / 60_000_000;
    let sec_micros = rest % 60_000_000;
    let whole = sec_micros / MICROS_PER_SECOND;
    let micro = sec_micros % MICROS_PER_SECOND;
    PgIntervalParts {
        years: months / 12,
        months: months % 12,
        days: i64::from(days),
        hours,
        minutes,
        // PGInterval.getSeconds(): wholeSeconds + (double) microSeconds / 1e6
        seconds: whole as f64 + micro as f64 / 1e6,
    }
}

/// `io.debezium.time.MicroDuration`: `MicroDuration.durationMicros` over the parts,
/// with a month of 30.4375 days, in the same floating-point steps Debezium takes.
pub fn interval_micros(months: i32, days: i32, micros: i64) -> i64 {
    let p = pg_interval_parts(months, days, micros);
    let number_of_days = ((p.years * 12 + p.months) as f64) * DAYS_PER_MONTH_AVG + p.days as f64;
    let number_of_seconds =
        (((number_of_days * 24.0 + p.hours as f64) * 60.0) + p.minutes as f64) * 60.0 + p.seconds;
    (number_of_seconds * 1e6 + 0.0) as i64
}

/// `io.debezium.time.Interval`: `P<y>Y<m>M<d>DT<h>H<m>M<s>S` with the seconds printed
/// as `BigDecimal.valueOf(seconds).stripTrailingZeros().toPlainString()`.
pub fn interval_iso(months: i32, days: i32, micros: i64) -> String {
    let p = pg_interval_parts(months, days, micros);
    let mut secs = format!("{}", p.seconds);
    if let Some(dot) = secs.find('.') {
        if secs.len() - dot - 1 > 9 {
            secs.truncate(dot + 10);
        }
        let trimmed = secs.trim_end_matches('0').trim_end_matches('.').len();
        secs.truncate(trimmed);
    }
    if secs == "-0" {
        secs = "0".into();
    }
    format!(
        "P{}Y{}M{}DT{}H{}M{}S",
        p.years, p.months, p.days, p.hours, p.minutes, secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::types::PgType;
    use crate::model::value::{parse_text, TimestampValue, Value};

    fn zts(text: &str, fraction: i32) -> String {
        let Ok(Value::TimestampTz(TimestampValue::Finite(us))) =
            parse_text(&PgType::TimestampTz, text)
        else {
            panic!("{text}")
        };
        let mut s = String::new();
        write_zoned_timestamp(&mut s, us, fraction).unwrap();
        s
    }

    proptest::proptest! {
        #[test]
        fn padded_digits_equal_std_formatting(value: u64, width in 0usize..=20) {
            let mut s = String::new();
            write_padded(&mut s, value, width).unwrap();
            proptest::prop_assert_eq!(s, format!("{value:0width$}"));
        }
    }

    #[test]
    fn years_are_padded_signed_and_widened_as_java_does() {
        let year = |y: i64| {
            let mut s = String::new();
            write_year(&mut s, y).unwrap();
            s
        };
        assert_eq!(year(7), "0007");
        assert_eq!(year(2016), "2016");
        assert_eq!(year(9999), "9999");
        assert_eq!(year(10000), "+10000");
        assert_eq!(year(-44), "-0044");
    }

    #[test]
    fn zoned_timestamps_match_debeziums_tests() {
        // AbstractRecordsProducerTest.schemaAndValuesForDateTimeTypes
        assert_eq!(
            zts("2016-11-04 11:51:30.123456+00", 6),
            "2016-11-04T11:51:30.123456Z"
        );
        assert_eq!(
            zts("21016-11-04 06:51:30.123456+00", 6),
            "+21016-11-04T06:51:30.123456Z"
        );
        assert_eq!(
            zts("21016-11-04 06:51:30+00", 6),
            "+21016-11-04T06:51:30.000000Z"
        );
        assert_eq!(
            zts("294247-01-01 23:59:59.999999+00", 6),
            "+294247-01-01T23:59:59.999999Z"
        );
        assert_eq!(
            zts("4714-12-31 23:59:59.999999+00 BC", 6),
            "-4713-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            zts("2020-04-01 11:51:02+00", 6),
            "2020-04-01T11:51:02.000000Z"
        );
        // timestamptz(3) and timestamptz(0)
        assert_eq!(
            zts("2016-11-04 11:51:30.12+00", 3),
            "2016-11-04T11:51:30.120Z"
        );
        assert_eq!(zts("2016-11-04 11:51:30+00", 0), "2016-11-04T11:51:30Z");
        assert_eq!(
            zts("0001-01-01 00:00:00+00 BC", 6),
            "0000-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn zoned_times_are_utc() {
        let mut s = String::new();
        // '13:51:30.123789+02:00' → 11:51:30.123789Z
        write_zoned_time(
            &mut s,
            (13 * 3600 + 51 * 60 + 30) * 1_000_000 + 123_789,
            7200,
        )
        .unwrap();
        assert_eq!(s, "11:51:30.123789Z");
        s.clear();
        write_zoned_time(
            &mut s,
            (13 * 3600 + 51 * 60 + 30) * 1_000_000 + 123_000,
            7200,
        )
        .unwrap();
        assert_eq!(s, "11:51:30.123Z");
        s.clear();
        write_zoned_time(&mut s, 3_600_000_000, 7200).unwrap();
        assert_eq!(s, "23:00:00Z");
    }

    #[test]
    fn intervals_follow_micro_duration() {
        // 'P1Y2M3DT4H5M6.78S' = 1 year 2 mons 3 days 04:05:06.78
        let micros = ((4 * 60 + 5) * 60 + 6) * 1_000_000 + 780_000;
        let expected = {
            // MicroDuration.durationMicros(1, 2, 3, 4, 5, 6.78, DAYS_PER_MONTH_AVG)
            let days = 14.0 * DAYS_PER_MONTH_AVG + 3.0;
            let secs = (((days * 24.0 + 4.0) * 60.0) + 5.0) * 60.0 + 6.78;
            (secs * 1e6) as i64
        };
        assert_eq!(interval_micros(14, 3, micros), expected);
        assert_eq!(interval_iso(14, 3, micros), "P1Y2M3DT4H5M6.78S");
        assert_eq!(interval_iso(0, 0, 0), "P0Y0M0DT0H0M0S");
        assert_eq!(interval_iso(-14, 0, -1_500_000), "P-1Y-2M0DT0H0M-1.5S");
        assert_eq!(interval_micros(0, 0, -1_500_000), -1_500_000);
    }
}
