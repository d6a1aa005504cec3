//! The one duration grammar of eos-sec: every duration a command-line flag
//! or a config file takes (`--write-interval 2m`, `request_timeout = "2m"`,
//! `default_ttl = "14d"`, CA lifetimes, log ages) is read here.
//!
//! It is humantime's grammar held to whole numbers and the units `ms`, `s`,
//! `m`, `h` and `d`, written alone or together: `250ms`, `90s`, `15m`,
//! `1h 30m`, `30d`. humantime also reads weeks, months of 30.44 days,
//! years of 365.25 days and fractions; none of them was ever accepted here,
//! and a "month" that is not a calendar month is no lifetime anyone means.
//!
//! It lives in this crate because security codes were its first user and
//! every crate that reads a config (`eos-register`'s `[serve]`, the CLI)
//! already depends on it; the domain crates that only print durations
//! (`eos-ca`'s lifetimes) format them in this same grammar.

use std::time::Duration;

/// The units a duration may use.
pub const UNITS: &str = "ms, s, m, h or d";

/// Parse a duration: whole numbers with units, e.g. `250ms`, `90s`,
/// `1h 30m`, `30d`. The error names the text and what was wrong with it.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let words = t
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .filter(|w| !w.is_empty());
    for word in words {
        if !matches!(word, "ms" | "s" | "m" | "h" | "d") {
            return Err(format!(
                "duration `{t}`: write whole numbers with a unit of {UNITS} (90s, 15m, 1h 30m), not `{word}`"
            ));
        }
    }
    humantime::parse_duration(t).map_err(|e| format!("duration `{t}`: {e}"))
}

/// [`parse`], for a duration kept in whole seconds (lifetimes, intervals
/// stored as seconds): `1500ms` is refused rather than rounded.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let d = parse(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("duration `{}` must be whole seconds", s.trim()));
    }
    Ok(d)
}

/// A config file's duration (serde `deserialize_with`), in this grammar and
/// more than zero; the error carries the file's line through the TOML
/// reader.
pub fn deserialize_positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use serde::Deserialize as _;
    let text = String::deserialize(d)?;
    let v = parse(&text).map_err(serde::de::Error::custom)?;
    if v.is_zero() {
        return Err(serde::de::Error::custom(format!(
            "duration `{}` must be more than zero",
            text.trim()
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_grammar() {
        let secs = Duration::from_secs;
        assert_eq!(parse("2m"), Ok(secs(120)));
        assert_eq!(parse(" 1h 30m "), Ok(secs(5400)));
        assert_eq!(parse("1h30m"), Ok(secs(5400)));
        assert_eq!(parse("30d"), Ok(secs(30 * 86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("2000ms"), Ok(secs(2)));
        for bad in [
            "",
            "d",
            "h",
            "14",
            "1w",
            "3 weeks",
            "1M",
            "1y",
            "-1d",
            "1.5h",
            "2 fortnights",
            "99999999999999999999d",
            "1e3s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_seconds("1500ms").is_err());
        assert_eq!(
            parse("3 weeks").unwrap_err(),
            "duration `3 weeks`: write whole numbers with a unit of ms, s, m, h or d (90s, 15m, 1h 30m), not `weeks`"
        );
    }
}
