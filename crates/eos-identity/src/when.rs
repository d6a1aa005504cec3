//! The one text form of a time in eos-sec's records, messages and output:
//! RFC 3339 in UTC (`2026-01-05T09:00:00Z`), made with the `time` crate's
//! own [`Rfc3339`] formatter.
//!
//! It lives here because this is the lowest crate every crate that writes a
//! time depends on (eos-ca, eos-codes, eos-plan, eos-store, eos-ops, the
//! CLI). Each caller picks a precision: whole seconds ([`rfc3339`], the
//! stored columns), milliseconds ([`rfc3339_ms`], times whose differences
//! are reported in milliseconds), or the time's own ([`rfc3339_exact`],
//! log observations). Parsing stays with the formats that are parsed
//! (eos-logs' stamps, eos-plan's rules).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// RFC 3339 UTC to the second (`2026-01-05T09:00:00Z`): the format of every
/// timestamp eos-sec stores. Sub-seconds are dropped (truncated, not
/// rounded), so a time sorts with its text. Takes an [`OffsetDateTime`] or
/// a [`std::time::SystemTime`].
pub fn rfc3339(t: impl Into<OffsetDateTime>) -> String {
    let t = utc(t.into());
    rfc3339_exact(t.replace_nanosecond(0).unwrap_or(t))
}

/// RFC 3339 UTC to the millisecond, always three digits
/// (`2026-01-05T09:00:00.263Z`, `…09:00:00.000Z`): for times whose
/// differences are reported in milliseconds (the outbox, the syncer's
/// attempts), where whole seconds would overstate a lag by up to a second,
/// or tie two events. [`Rfc3339`] trims trailing zeros, so the fixed width
/// is the whole-second text with the milliseconds put before its `Z`.
pub fn rfc3339_ms(t: impl Into<OffsetDateTime>) -> String {
    let t = utc(t.into());
    let mut text = rfc3339(t);
    if text.ends_with('Z') {
        text.pop();
        text.push_str(&format!(".{:03}Z", t.millisecond()));
    }
    text
}

/// RFC 3339 UTC with the time's own precision: sub-seconds only when there
/// are any, trailing zeros trimmed (`2026-11-02T08:01:37.5Z`).
pub fn rfc3339_exact(t: impl Into<OffsetDateTime>) -> String {
    let t = utc(t.into());
    // Rfc3339 refuses only years outside 0..=9999, which no clock or
    // certificate eos-sec reads gives; the Unix seconds still say when.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: i64, nanos: u32) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs)
            .and_then(|t| t.replace_nanosecond(nanos))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn each_precision() {
        let t = at(1_767_603_600, 263_400_000);
        assert_eq!(rfc3339(t), "2026-01-05T09:00:00Z");
        assert_eq!(rfc3339_ms(t), "2026-01-05T09:00:00.263Z");
        assert_eq!(rfc3339_exact(t), "2026-01-05T09:00:00.2634Z");
        let whole = at(1_767_603_600, 0);
        assert_eq!(rfc3339_ms(whole), "2026-01-05T09:00:00.000Z");
        assert_eq!(rfc3339_exact(whole), "2026-01-05T09:00:00Z");
        let sys = UNIX_EPOCH + Duration::new(1_767_603_600, 999_999_999);
        assert_eq!(rfc3339(sys), "2026-01-05T09:00:00Z");
    }

    #[test]
    fn other_offsets_are_written_in_utc() {
        let t =
            at(1_767_603_600, 0).to_offset(UtcOffset::from_hms(2, 0, 0).unwrap_or(UtcOffset::UTC));
        assert_eq!(rfc3339(t), "2026-01-05T09:00:00Z");
    }

    proptest! {
        /// The same text the fixed format descriptions the copies used gave.
        #[test]
        fn matches_the_fixed_formats(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = at(secs, nanos);
            let seconds = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            let millis = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            prop_assert_eq!(Some(rfc3339(t)), t.format(&seconds).ok());
            prop_assert_eq!(Some(rfc3339_ms(t)), t.format(&millis).ok());
            prop_assert_eq!(Some(rfc3339_exact(t)), t.format(&Rfc3339).ok());
        }
    }
}
