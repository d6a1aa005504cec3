//! Amazon CloudFront standard logs ("Standard logging reference", legacy and
//! v2 W3C output): tab-separated, the column order given by the latest
//! `#Fields:` header, other `#` lines are comments. Before any header the
//! documented 33-field layout applies. Used: `date` + `time` (or
//! `timestamp`), `c-ip`, `x-forwarded-for`, `cs-method`, `cs-uri-stem`,
//! `sc-status`, `x-host-header` (the viewer's Host; `cs(Host)` is the
//! distribution's domain and is used only when `x-host-header` is absent).

use std::borrow::Cow;

use crate::bad::{Bad, BadReason, bad};
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
    width: usize,
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
        Layout {
            date: needed[0],
            time: needed[1],
            timestamp: needed[2],
            c_ip: needed[3],
            xff: needed[4],
            method: needed[5],
            uri: needed[6],
            status: needed[7],
            host_header: needed[8],
            cs_host: needed[9],
            width: needed.iter().flatten().max().map_or(0, |m| m + 1),
        }
    }

    /// A `#Fields:` line → layout; `None` for other lines.
    pub(crate) fn from_header(line: &str) -> Option<Layout> {
        let rest = line.strip_prefix("#Fields:")?;
        Some(Layout::from_names(rest.trim()))
    }
}

fn unescape(s: &str) -> Cow<'_, str> {
    // CloudFront URL-encodes spaces and some separators inside fields.
    if s.contains('%') {
        Cow::Owned(s.replace("%20", " ").replace("%2C", ","))
    } else {
        Cow::Borrowed(s)
    }
}

/// Parse one data line with `layout`.
pub(crate) fn parse<'a>(layout: &Layout, line: &'a str) -> Result<Raw<'a>, Bad> {
    let cols: Vec<&str> = line.splitn(layout.width.max(1) + 1, '\t').collect();
    if cols.len() < layout.width {
        return Err(Bad::new(
            BadReason::FieldCount,
            format!("{} fields, {} expected", cols.len(), layout.width),
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
    let host = get(layout.host_header).or_else(|| get(layout.cs_host));
    Ok(Raw {
        time: Some(time),
        space: None,
        host: host.map(Cow::Borrowed),
        peer: Some(peer),
        xff: get(layout.xff).map(unescape),
        user: None,
        method: get(layout.method).map(Cow::Borrowed),
        path: get(layout.uri).map(Cow::Borrowed),
        status,
        waf_action: None,
    })
}
