//! RFC 3339 timestamps (`2026-11-23T00:00:00Z`, `2026-11-23T09:30:00.5+09:00`).
//!
//! Small enough to write out, and strict: every field is range-checked (including the day
//! against the month and leap years), unlike looser parsers that accept `2026-02-30`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch of an RFC 3339 `date-time` (section 5.6): `YYYY-MM-DD`, `T`,
/// `hh:mm:ss`, optional fraction, then `Z` or `±hh:mm`. `t`/`z` are accepted in lower case as
/// the RFC allows; a leap second (`:60`) counts as the following second. Fractions are
/// dropped.
///
/// The error says which part is wrong, e.g. `month 13 is out of range (01-12)`.
pub fn parse(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err("too short for YYYY-MM-DDThh:mm:ssZ".to_string());
    }
    expect_byte(b, 4, b'-', "'-' after the year")?;
    expect_byte(b, 7, b'-', "'-' after the month")?;
    if !matches!(b[10], b'T' | b't') {
        return Err("expected 'T' between date and time (position 11)".to_string());
    }
    expect_byte(b, 13, b':', "':' after the hour")?;
    expect_byte(b, 16, b':', "':' after the minutes")?;
    let year = digits(b, 0, 4, "year")?;
    let month = ranged(digits(b, 5, 2, "month")?, 1, 12, "month")?;
    let day = digits(b, 8, 2, "day")?;
    let max_day = days_in_month(year, month);
    if !(1..=max_day).contains(&day) {
        return Err(format!(
            "day {day:02} is out of range for {year:04}-{month:02} (01-{max_day:02})"
        ));
    }
    let hour = ranged(digits(b, 11, 2, "hour")?, 0, 23, "hour")?;
    let minute = ranged(digits(b, 14, 2, "minute")?, 0, 59, "minute")?;
    let second = ranged(digits(b, 17, 2, "second")?, 0, 60, "second")?;
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err("expected digits after the '.' of the fraction".to_string());
        }
    }
    let offset = parse_offset(&b[i..])?;
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// `time` in UTC with whole seconds, e.g. `2026-11-23T00:00:00Z`.
pub fn format_utc(time: SystemTime) -> String {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    format_unix(secs)
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time, formatted by [`format_utc`].
pub fn now_utc() -> String {
    format_utc(SystemTime::now())
}

fn expect_byte(b: &[u8], at: usize, want: u8, what: &str) -> Result<(), String> {
    if b[at] == want {
        Ok(())
    } else {
        Err(format!("expected {what} (position {})", at + 1))
    }
}

fn digits(b: &[u8], at: usize, len: usize, what: &str) -> Result<i64, String> {
    let part = &b[at..at + len];
    if !part.iter().all(u8::is_ascii_digit) {
        return Err(format!("the {what} must be {len} digits"));
    }
    Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn ranged(v: i64, lo: i64, hi: i64, what: &str) -> Result<i64, String> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{what} {v:02} is out of range ({lo:02}-{hi:02})"))
    }
}

/// Offset east of UTC in seconds, from `Z` or `±hh:mm` (which must end the string).
fn parse_offset(b: &[u8]) -> Result<i64, String> {
    match b {
        [b'Z' | b'z'] => Ok(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let h = ranged(digits(b, 1, 2, "offset hour")?, 0, 23, "offset hour")?;
            let m = ranged(digits(b, 4, 2, "offset minute")?, 0, 59, "offset minute")?;
            let secs = h * 3600 + m * 60;
            Ok(if *sign == b'+' { secs } else { -secs })
        }
        _ => Err("expected the time zone as 'Z' or '+hh:mm'/'-hh:mm' at the end".to_string()),
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        // `date -u -d 2026-11-23T00:00:00Z +%s`
        assert_eq!(parse("2026-11-23T00:00:00Z"), Ok(1_795_392_000));
        assert_eq!(parse("2026-11-23T09:00:00.123+09:00"), Ok(1_795_392_000));
        assert_eq!(parse("2026-11-22t19:30:00-04:30"), Ok(1_795_392_000));
        assert_eq!(parse("2000-02-29T00:00:00z"), Ok(951_782_400));
        assert_eq!(parse("1969-12-31T23:59:59Z"), Ok(-1));
    }

    #[test]
    fn format_roundtrips() {
        for secs in [0, -1, 951_782_400, 1_795_392_000, 4_102_444_799] {
            let s = format_unix(secs);
            assert_eq!(parse(&s), Ok(secs), "{s}");
        }
        assert_eq!(format_unix(1_795_392_000), "2026-11-23T00:00:00Z");
        assert_eq!(format_unix(951_868_799), "2000-02-29T23:59:59Z");
    }

    #[test]
    fn rejects_with_reasons() {
        let cases = [
            ("2026-11-23", "too short"),
            ("2026-13-01T00:00:00Z", "month 13 is out of range"),
            ("2026-02-29T00:00:00Z", "day 29 is out of range for 2026-02"),
            ("1900-02-29T00:00:00Z", "day 29 is out of range for 1900-02"),
            ("2026-11-23 00:00:00Z", "expected 'T'"),
            ("2026-11-23T24:00:00Z", "hour 24 is out of range"),
            ("2026-11-23T00:60:00Z", "minute 60 is out of range"),
            ("2026-11-23T00:00:61Z", "second 61 is out of range"),
            ("2026-11-23T00:00:00", "too short"),
            ("2026-11-23T00:00:00+0100", "time zone"),
            ("2026-11-23T00:00:00+24:00", "offset hour 24"),
            ("2026-11-23T00:00:00.Z", "digits after the '.'"),
            ("2026-11-23T00:00:00Zjunk", "time zone"),
            ("2O26-11-23T00:00:00Z", "year must be 4 digits"),
            ("2026/11/23T00:00:00Z", "'-' after the year"),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(want), "{input}: got {err:?}, want {want:?}");
        }
    }
}
