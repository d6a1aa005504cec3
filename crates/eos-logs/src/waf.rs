//! AWS WAF web ACL traffic logs ("Log fields for protection pack (web ACL)
//! traffic"): one JSON object per line. Used: `timestamp` (epoch ms),
//! `action`, `responseCodeSent`, `httpRequest.clientIp`,
//! `httpRequest.headers` (`Host`, `X-Forwarded-For`), `httpRequest.uri`,
//! `httpRequest.httpMethod`. Everything else is ignored.

use std::borrow::Cow;

use serde::Deserialize;

use crate::bad::{Bad, BadReason, bad};
use crate::record::{Raw, WafAction, parse_addr};
use crate::stamp;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    timestamp: Option<i64>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    response_code_sent: Option<u16>,
    #[serde(borrow)]
    http_request: Option<Request<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    client_ip: Option<Cow<'a, str>>,
    /// `null` when WAF logged no headers.
    #[serde(borrow, default)]
    headers: Option<Vec<Header<'a>>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow)]
    http_method: Option<Cow<'a, str>>,
}

/// A header as logged; either half may be missing (or `null`): such a
/// header is skipped, the rest of the line is still read.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<Cow<'a, str>>,
}

/// Parse one WAF log line.
pub(crate) fn parse(line: &str) -> Result<Raw<'_>, Bad> {
    let parsed: Line<'_> = match serde_json::from_str(line) {
        Ok(l) => l,
        Err(e) => return Err(Bad::new(BadReason::InvalidJson, e.to_string())),
    };
    let missing = |f: &str| Bad::new(BadReason::MissingField, format!("field `{f}` is absent"));
    let ms = parsed.timestamp.ok_or_else(|| missing("timestamp"))?;
    let Some(time) = stamp::epoch_millis(ms) else {
        return bad(BadReason::BadTime, "timestamp", &ms.to_string());
    };
    let action = parsed.action.ok_or_else(|| missing("action"))?;
    let Some(waf_action) = WafAction::parse(&action) else {
        return bad(BadReason::MissingField, "unknown action", &action);
    };
    let req = parsed.http_request.ok_or_else(|| missing("httpRequest"))?;
    let client = req
        .client_ip
        .ok_or_else(|| missing("httpRequest.clientIp"))?;
    let Some(peer) = parse_addr(&client, false) else {
        return bad(BadReason::BadAddress, "httpRequest.clientIp", &client);
    };
    let mut host = None;
    let mut xff: Option<Cow<'_, str>> = None;
    for h in req.headers.into_iter().flatten() {
        let (Some(name), Some(value)) = (h.name, h.value) else {
            continue;
        };
        if name.eq_ignore_ascii_case("host") {
            host = Some(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            // Repeated headers are one list (RFC 9110, 5.3).
            xff = Some(match xff {
                Some(prev) => Cow::Owned(format!("{prev},{value}")),
                None => value,
            });
        }
    }
    let status = match parsed.response_code_sent {
        Some(s) if (100..=599).contains(&s) => Some(s),
        Some(s) => return bad(BadReason::BadStatus, "responseCodeSent", &s.to_string()),
        None => None,
    };
    Ok(Raw {
        time: Some(time),
        space: None,
        host,
        peer: Some(peer),
        xff,
        user: None,
        method: req.http_method,
        path: req.uri,
        status,
        waf_action: Some(waf_action),
        conn_trace_id: None,
    })
}
