//! AWS Application Load Balancer access logs ("Access logs for your
//! Application Load Balancer"): space-separated fields, some enclosed in
//! double quotes. Used: `time` (2), `client:port` (4), `elb_status_code`
//! (9), `"request"` (13). AWS may add fields at the end of an entry, so
//! trailing fields are ignored; at least the first 13 must be present.
//! No X-Forwarded-For is logged: the client field is the client (behind
//! CloudFront or another proxy it is that proxy — which the special-range
//! flags and the WAF/CloudFront logs reveal).

use std::borrow::Cow;

use crate::bad::{Bad, BadReason, bad};
use crate::record::{Raw, parse_addr, parse_status};
use crate::stamp;

/// Split an ALB entry into its first `N` fields (no allocation): quoted
/// fields end at a `"` followed by a space or the end of the line (user
/// agents may contain spaces and quotes). Returns the fields and how many
/// were found.
pub(crate) fn fields<const N: usize>(line: &str) -> ([&str; N], usize) {
    let mut out = [""; N];
    let mut n = 0;
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && n < N {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let (start, end, next) = if b[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            loop {
                match memchr::memchr(b'"', b.get(j..).unwrap_or_default()) {
                    Some(k) => {
                        let q = j + k;
                        if q + 1 >= b.len() || b[q + 1] == b' ' {
                            break (start, q, q + 1);
                        }
                        j = q + 1;
                    }
                    // Unterminated quote: the rest of the line.
                    None => break (start, b.len(), b.len()),
                }
            }
        } else {
            let end = memchr::memchr(b' ', &b[i..]).map_or(b.len(), |k| i + k);
            (i, end, end)
        };
        out[n] = line.get(start..end).unwrap_or_default();
        n += 1;
        i = next;
    }
    (out, n)
}

/// `"GET https://host:443/path?q HTTP/1.1"` → (method, host, path).
pub(crate) fn split_request(req: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let mut parts = req.splitn(3, ' ');
    let method = parts.next().filter(|m| !m.is_empty() && *m != "-");
    let url = parts.next().filter(|u| !u.is_empty() && *u != "-");
    let Some(url) = url else {
        return (method, None, None);
    };
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let (authority, path) = match after_scheme.find('/') {
        Some(i) => (&after_scheme[..i], &after_scheme[i..]),
        None => (after_scheme, "/"),
    };
    let path = path.split('?').next().unwrap_or(path);
    let host = Some(authority).filter(|a| !a.is_empty());
    (method, host, Some(path))
}

/// Parse one ALB entry.
pub(crate) fn parse(line: &str) -> Result<Raw<'_>, Bad> {
    let (f, n) = fields::<13>(line);
    if n < 13 {
        return Err(Bad::new(
            BadReason::FieldCount,
            format!("{n} fields, at least 13 expected"),
        ));
    }
    let [
        _type,
        time,
        _elb,
        client,
        _target,
        _t1,
        _t2,
        _t3,
        elb_status,
        _target_status,
        _rx,
        _tx,
        request,
    ] = f;
    let Some(time) = stamp::rfc3339(time) else {
        return bad(BadReason::BadTime, "time", time);
    };
    let Some(peer) = parse_addr(client, true) else {
        return bad(BadReason::BadAddress, "client:port", client);
    };
    let status = parse_status(elb_status)?;
    let (method, host, path) = split_request(request);
    Ok(Raw {
        time: Some(time),
        space: None,
        host: host.map(Cow::Borrowed),
        peer: Some(peer),
        xff: None,
        user: None,
        method: method.map(Cow::Borrowed),
        path: path.map(Cow::Borrowed),
        status,
        waf_action: None,
    })
}
