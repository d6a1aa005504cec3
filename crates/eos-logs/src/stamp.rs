//! Timestamp parsing on the hot path: RFC 3339 (usage log, ALB), W3C date
//! and time (CloudFront), epoch numbers (usage log, WAF). Hand-written
//! because it runs once per line and the general parsers allocate; checked
//! against `time`'s RFC 3339 parser by a property test.

use crate::record::Stamp;

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), per
/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// `YYYY-MM-DD` → days since the epoch.
fn date(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let y = i64::from(digits(b.get(0..4)?)?);
    let m = digits(b.get(5..7)?)?;
    let d = digits(b.get(8..10)?)?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `HH:MM:SS` → seconds of the day (leap second 60 accepted as RFC 3339 allows).
fn clock(b: &[u8]) -> Option<i64> {
    if b.len() != 8 || b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    let h = digits(b.get(0..2)?)?;
    let mi = digits(b.get(3..5)?)?;
    let s = digits(b.get(6..8)?)?;
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(i64::from(h * 3600 + mi * 60 + s))
}

/// RFC 3339 `date-time` (`T` or `t` or a space between date and time; `Z`,
/// `z` or a numeric offset).
pub(crate) fn rfc3339(s: &str) -> Option<Stamp> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let days = date(b.get(0..10)?)?;
    let tod = clock(b.get(11..19)?)?;
    let mut rest = b.get(19..)?;
    let mut nanos: u32 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, &c) in frac.iter().take(n).enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(c - b'0');
            }
        }
        for _ in n..9 {
            nanos *= 10;
        }
        rest = frac.get(n..)?;
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    // A leap second is folded into the next second, as `time` does not
    // represent it.
    Some(Stamp {
        secs: days * 86_400 + tod - offset,
        nanos,
    })
}

/// CloudFront `date` + `time` fields (UTC).
pub(crate) fn w3c(date_s: &str, time_s: &str) -> Option<Stamp> {
    let days = date(date_s.as_bytes())?;
    let tod = clock(time_s.as_bytes())?;
    Some(Stamp {
        secs: days * 86_400 + tod,
        nanos: 0,
    })
}

/// Epoch number: seconds, or milliseconds when ≥ 10^11 (10^11 seconds is
/// the year 5138, so no real seconds value is that large).
pub(crate) fn epoch(n: f64) -> Option<Stamp> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs_f = if n >= 1e11 { n / 1000.0 } else { n };
    if secs_f >= 253_402_300_800.0 {
        // After 9999-12-31: not a log timestamp.
        return None;
    }
    let secs = secs_f.trunc();
    let nanos = ((secs_f - secs) * 1e9).round().clamp(0.0, 999_999_999.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(Stamp {
        secs: secs as i64,
        nanos: nanos as u32,
    })
}

/// Epoch milliseconds as an integer (WAF `timestamp`).
pub(crate) fn epoch_millis(ms: i64) -> Option<Stamp> {
    if !(0..253_402_300_800_000).contains(&ms) {
        return None;
    }
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    Some(Stamp {
        secs: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) as u32) * 1_000_000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn known_values() {
        let s = rfc3339("2018-07-02T22:23:00.186641Z").unwrap_or(Stamp { secs: 0, nanos: 0 });
        assert_eq!(s.secs, 1_530_570_180);
        assert_eq!(s.nanos, 186_641_000);
        let s = rfc3339("2026-11-02T10:14:03+01:00").map(|s| s.secs);
        assert_eq!(s, Some(1_793_610_843));
        assert_eq!(
            w3c("2019-12-04", "21:02:31").map(|s| s.secs),
            Some(1_575_493_351)
        );
        assert_eq!(
            epoch_millis(1_683_355_579_981).map(|s| s.secs),
            Some(1_683_355_579)
        );
        assert_eq!(
            epoch(1_683_355_579_981.0).map(|s| s.secs),
            Some(1_683_355_579)
        );
        assert_eq!(epoch(1_683_355_579.5).map(|s| s.nanos), Some(500_000_000));
        for bad in [
            "2018-02-30T00:00:00Z",
            "2018-07-02T24:00:00Z",
            "2018-07-02T22:23:00",
            "2018-07-02T22:23:00.Z",
            "2018-07-02 22:23",
            "garbage",
            "2018-07-02T22:23:00+0100",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_time_crate(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000, off in -86_399i32..86_399) {
            let off = time::UtcOffset::from_whole_seconds(off - off % 60).unwrap_or(time::UtcOffset::UTC);
            let dt = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                .replace_nanosecond(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                .to_offset(off);
            if let Ok(text) = dt.format(&Rfc3339) {
                let got = rfc3339(&text);
                prop_assert_eq!(got.map(|s| s.nanos_total()), Some(dt.unix_timestamp_nanos()), "{}", text);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = rfc3339(&s);
            let _ = w3c(&s, &s);
        }
    }
}
