//! Amazon CloudFront standard logs ("Standard logging reference", legacy and
//! v2 W3C output): tab-separated, the column order given by the latest
//! `#Fields:` header, other `#` lines are comments. Before any header the
//! documented 33-field layout applies. Used: `date` + `time` (or
//! `timestamp`), `c-ip`, `x-forwarded-for`, `cs-method`, `cs-uri-stem`,
//! `sc-status`, `x-host-header` (the viewer's Host; `cs(Host)` is the
//! distribution's domain and is used only when `x-host-header` is absent).

use std::borrow::Cow;

use crate::bad::{Bad, BadReason, bad, shown};
use crate::record::{Raw, parse_addr, parse_status};
use crate::stamp;

/// The documented field order of the legacy standard log.
pub(crate) const DEFAULT_FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

/// Column positions of the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    date: Option<usize>,
    time: Option<usize>,
    timestamp: Option<usize>,
    c_ip: Option<usize>,
    xff: Option<usize>,
    method: Option<usize>,
    uri: Option<usize>,
    status: Option<usize>,
    host_header: Option<usize>,
    cs_host: Option<usize>,
    /// Columns a line needs: up to the time and `c-ip`.
    required: usize,
    /// Columns up to the last one read.
    width: usize,
    /// Columns the header names.
    declared: usize,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout::from_names(DEFAULT_FIELDS)
    }
}

impl Layout {
    /// From the names after `#Fields:` (space or tab separated).
    pub(crate) fn from_names(names: &str) -> Layout {
        let names: Vec<&str> = names.split([' ', '\t']).filter(|n| !n.is_empty()).collect();
        let pos = |n: &str| names.iter().position(|x| x.eq_ignore_ascii_case(n));
        let needed = [
            pos("date"),
            pos("time"),
            pos("timestamp").or_else(|| pos("timestamp(ms)")),
            pos("c-ip"),
            pos("x-forwarded-for"),
            pos("cs-method"),
            pos("cs-uri-stem"),
            pos("sc-status"),
            pos("x-host-header"),
            pos("cs(host)"),
        ];
        let [date, time, timestamp, c_ip, ..] = needed;
        let when = match (date, time) {
            (Some(d), Some(t)) => Some(d.max(t)),
            _ => timestamp,
        };
        let columns =
            |v: &mut dyn Iterator<Item = Option<usize>>| v.flatten().max().map_or(0, |m| m + 1);
        Layout {
            date,
            time,
            timestamp,
            c_ip,
            xff: needed[4],
            method: needed[5],
            uri: needed[6],
            status: needed[7],
            host_header: needed[8],
            cs_host: needed[9],
            required: columns(&mut [when, c_ip].into_iter()),
            width: columns(&mut needed.into_iter()),
            declared: names.len(),
        }
    }

    /// Is column `i` one the parser reads?
    fn reads(&self, i: usize) -> bool {
        [
            self.date,
            self.time,
            self.timestamp,
            self.c_ip,
            self.xff,
            self.method,
            self.uri,
            self.status,
            self.host_header,
            self.cs_host,
        ]
        .contains(&Some(i))
    }

    /// A `#Fields:` line → layout; `None` for other lines.
    pub(crate) fn from_header(line: &str) -> Option<Layout> {
        let rest = line.strip_prefix("#Fields:")?;
        Some(Layout::from_names(rest.trim()))
    }
}

/// Does CloudFront URL-encode byte `b` in a log field? "Standard log file
/// fields": ASCII codes 0 to 32, 127 and higher, and `< > " # % { } | \ ^
/// ~ [ ] ` '`.
fn aws_encodes(b: u8) -> bool {
    b <= b' '
        || b >= 0x7f
        || matches!(
            b,
            b'<' | b'>'
                | b'"'
                | b'#'
                | b'%'
                | b'{'
                | b'}'
                | b'|'
                | b'\\'
                | b'^'
                | b'~'
                | b'['
                | b']'
                | b'`'
                | b'\''
        )
}

/// Undo CloudFront's URL encoding of a field: `%XX` becomes its byte when
/// it is one CloudFront encodes (so `%` itself is `%25`); anything else is
/// left as written. Borrowed, with no copy, when the field has no `%`. A
/// field that decodes to bytes that are not UTF-8 is `invalid_utf8`.
pub(crate) fn decode<'a>(what: &str, s: &'a str) -> Result<Cow<'a, str>, Bad> {
    let b = s.as_bytes();
    let Some(first) = memchr::memchr(b'%', b) else {
        return Ok(Cow::Borrowed(s));
    };
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(b.get(..first).unwrap_or_default());
    let mut i = first;
    while let Some(&c) = b.get(i) {
        let escaped = match b.get(i + 1..i + 3) {
            Some(&[h, l]) if c == b'%' => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(v) if aws_encodes(v) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| {
        Bad::new(
            BadReason::InvalidUtf8,
            format!("{what} `{}` decodes to bytes that are not UTF-8", shown(s)),
        )
    })
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Parse one data line with `layout`.
pub(crate) fn parse<'a>(layout: &Layout, line: &'a str) -> Result<Raw<'a>, Bad> {
    let cols: Vec<&str> = line.splitn(layout.width.max(1) + 1, '\t').collect();
    let n = cols.len();
    // Older logs end earlier (19 columns, up to time-taken, before
    // x-forwarded-for was added): a line may lack the later columns, which
    // are then absent. But the last column of a line shorter than its
    // layout may have been cut short: a line that ends in a column read is
    // refused, never read as a shorter host or address.
    let short = n < layout.declared && n <= layout.width;
    if n < layout.required || (short && layout.reads(n - 1)) {
        return Err(Bad::new(
            BadReason::FieldCount,
            format!("{n} fields, {} expected", layout.declared),
        ));
    }
    let get = |i: Option<usize>| {
        i.and_then(|i| cols.get(i).copied())
            .filter(|v| !v.is_empty() && *v != "-")
    };
    let missing = |f: &str| Bad::new(BadReason::MissingField, format!("field `{f}` is absent"));
    let time = match (get(layout.date), get(layout.time), get(layout.timestamp)) {
        (Some(d), Some(t), _) => match stamp::w3c(d, t) {
            Some(s) => s,
            None => return bad(BadReason::BadTime, "date time", &format!("{d} {t}")),
        },
        (_, _, Some(ts)) => match ts.parse::<f64>().ok().and_then(stamp::epoch) {
            Some(s) => s,
            None => return bad(BadReason::BadTime, "timestamp", ts),
        },
        _ => return Err(missing("date/time")),
    };
    let c_ip = get(layout.c_ip).ok_or_else(|| missing("c-ip"))?;
    let Some(peer) = parse_addr(c_ip, false) else {
        return bad(BadReason::BadAddress, "c-ip", c_ip);
    };
    let status = match get(layout.status) {
        Some(s) => parse_status(s)?,
        None => None,
    };
    // The fields read as text are URL-encoded; c-ip, the status and the
    // time never hold an encoded character.
    let decoded = |what: &str, i: Option<usize>| get(i).map(|v| decode(what, v)).transpose();
    let host = get(layout.host_header).or_else(|| get(layout.cs_host));
    let host = host.map(|h| decode("host", h)).transpose()?;
    Ok(Raw {
        time: Some(time),
        space: None,
        host,
        peer: Some(peer),
        xff: decoded("x-forwarded-for", layout.xff)?,
        user: None,
        method: get(layout.method).map(Cow::Borrowed),
        path: decoded("cs-uri-stem", layout.uri)?,
        status,
        waf_action: None,
        conn_trace_id: None,
    })
}

#[cfg(test)]
mod tests {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    use proptest::prelude::*;

    use super::*;

    /// The table of "Standard log file fields", written with the
    /// percent-encoding crate (which also encodes every byte from 127 up).
    const AWS: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'<')
        .add(b'>')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'{')
        .add(b'}')
        .add(b'|')
        .add(b'\\')
        .add(b'^')
        .add(b'~')
        .add(b'[')
        .add(b']')
        .add(b'`')
        .add(b'\'');

    fn decoded(s: &str) -> Result<String, BadReason> {
        decode("f", s).map(Cow::into_owned).map_err(|b| b.reason)
    }

    #[test]
    fn decodes_what_cloudfront_encodes_and_nothing_else() {
        assert_eq!(
            decoded("%5B2001:db8::7%5D:443"),
            Ok("[2001:db8::7]:443".into())
        );
        assert_eq!(decoded("a,%20b%09c%7e%25"), Ok("a, b\tc~%".into()));
        assert_eq!(decoded("%E2%82%AC"), Ok("€".into()));
        // Not in the table: CloudFront writes these as they are, so `%2C`
        // was `%2C` in the request.
        assert_eq!(decoded("1.2.3.4%2C5.6.7.8"), Ok("1.2.3.4%2C5.6.7.8".into()));
        assert_eq!(decoded("%41%2F%3A"), Ok("%41%2F%3A".into()));
        // Incomplete escapes stay.
        assert_eq!(decoded("%"), Ok("%".into()));
        assert_eq!(decoded("x%2"), Ok("x%2".into()));
        assert_eq!(decoded("%g0%%20"), Ok("%g0% ".into()));
        assert!(matches!(decode("f", "plain"), Ok(Cow::Borrowed("plain"))));
        assert_eq!(decoded("%FF%20"), Err(BadReason::InvalidUtf8));
    }

    proptest! {
        #[test]
        fn decoding_undoes_the_aws_encoding(s in any::<String>()) {
            let encoded = utf8_percent_encode(&s, AWS).to_string();
            prop_assert_eq!(decoded(&encoded), Ok(s));
        }

        #[test]
        fn decoding_never_panics(s in "[%0-9a-fA-FxX ,\\[\\]€]{0,40}") {
            let _ = decode("f", &s);
        }
    }
}
