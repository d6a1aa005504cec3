//! AWS Application Load Balancer access logs ("Access logs for your
//! Application Load Balancer"): space-separated fields, some enclosed in
//! double quotes. Used: `time` (2), `client:port` (4), `elb_status_code`
//! (9), `"request"` (13), and `conn_trace_id` (30) when present (it names
//! the connection's entry in the connection log, [`crate::connection`]).
//! AWS may add fields at the end of an entry, so trailing fields are
//! ignored; at least the first 13 must be present.
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
/// were found, or, for a quoted field that is not closed (a line cut
/// short), its 1-based number and what it holds.
pub(crate) fn fields<const N: usize>(line: &str) -> Result<([&str; N], usize), (usize, &str)> {
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
                let Some(k) = memchr::memchr(b'"', b.get(j..).unwrap_or_default()) else {
                    return Err((n + 1, line.get(start..).unwrap_or_default()));
                };
                let q = j + k;
                if q + 1 >= b.len() || b[q + 1] == b' ' {
                    break (start, q, q + 1);
                }
                j = q + 1;
            }
        } else {
            let end = memchr::memchr(b' ', &b[i..]).map_or(b.len(), |k| i + k);
            (i, end, end)
        };
        out[n] = line.get(start..end).unwrap_or_default();
        n += 1;
        i = next;
    }
    Ok((out, n))
}

/// A request as ALB logs it: method, host (with port) and path.
type Request<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// `"GET https://host:443/path?q HTTP/1.1"` → (method, host, path). ALB
/// logs `- - -` when there was no request line (all `None`); anything else
/// that is not `METHOD scheme://host/path VERSION` is a bad line — such a
/// line was cut short or is not an ALB entry, and a URL without `://`
/// would otherwise be read as a host.
pub(crate) fn split_request(req: &str) -> Result<Request<'_>, Bad> {
    let mut parts = req.splitn(3, ' ');
    let (method, url, version) = (parts.next(), parts.next(), parts.next());
    if method == Some("-") && url == Some("-") {
        return Ok((None, None, None));
    }
    let not_a_request = || {
        bad(
            BadReason::BadRequestLine,
            "request is not `METHOD scheme://host/path VERSION`",
            req,
        )
    };
    let (Some(method), Some(url), Some(_)) = (
        method.filter(|m| !m.is_empty()),
        url,
        version.filter(|v| !v.trim().is_empty()),
    ) else {
        return not_a_request();
    };
    let Some((_, after_scheme)) = url.split_once("://") else {
        return not_a_request();
    };
    let (authority, path) = match after_scheme.find('/') {
        Some(i) => (&after_scheme[..i], &after_scheme[i..]),
        None => (after_scheme, "/"),
    };
    if authority.is_empty() {
        return not_a_request();
    }
    let path = path.split('?').next().unwrap_or(path);
    Ok((Some(method), Some(authority), Some(path)))
}

/// Parse one ALB entry.
pub(crate) fn parse(line: &str) -> Result<Raw<'_>, Bad> {
    // Up to `conn_trace_id`; a quote left open after the request (a line
    // cut short in the user agent) costs only the trace id.
    let (f, n) = match fields::<30>(line) {
        Ok(f) => f,
        Err((n, value)) if n <= 13 => return unclosed(n, value),
        Err(_) => {
            let (first, n) = fields::<13>(line).map_err(|(n, value)| unclosed_bad(n, value))?;
            let mut f = [""; 30];
            f[..13].copy_from_slice(&first);
            (f, n.min(13))
        }
    };
    if n < 13 {
        return Err(Bad::new(
            BadReason::FieldCount,
            format!("{n} fields, at least 13 expected"),
        ));
    }
    let trace = (n == 30)
        .then_some(f[29])
        .filter(|t| !t.is_empty() && *t != "-");
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
        ..,
    ] = f;
    let Some(time) = stamp::rfc3339(time) else {
        return bad(BadReason::BadTime, "time", time);
    };
    let Some(peer) = parse_addr(client, true) else {
        return bad(BadReason::BadAddress, "client:port", client);
    };
    let status = parse_status(elb_status)?;
    let (method, host, path) = split_request(request)?;
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
        conn_trace_id: trace,
    })
}

fn unclosed<T>(n: usize, value: &str) -> Result<T, Bad> {
    Err(unclosed_bad(n, value))
}

fn unclosed_bad(n: usize, value: &str) -> Bad {
    let what = if n == 13 {
        "field 13 (request) opens a quote that is not closed:".to_owned()
    } else {
        format!("field {n} opens a quote that is not closed:")
    };
    Bad::new(
        BadReason::UnclosedQuote,
        format!("{what} `{}`", crate::bad::shown(value)),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(method: &str, host: &str, path: &str, agent: &str) -> String {
        format!(
            "https 2026-11-02T08:01:37.001000Z app/x/1 198.51.100.7:50123 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"{method} https://{host}{path}?q=1 HTTP/1.1\" \"{agent}\" - -"
        )
    }

    #[test]
    fn no_request_line_is_not_a_bad_request_line() {
        assert_eq!(split_request("- - - "), Ok((None, None, None)));
        for req in [
            "",
            "GET",
            "GET /x HTTP/1.1",
            "GET https:// HTTP/1.1",
            "GET http",
        ] {
            let got = split_request(req).map_err(|b| b.reason);
            assert_eq!(got, Err(BadReason::BadRequestLine), "{req:?}");
        }
    }

    proptest! {
        /// A whole entry gives back its method, host and path; the same
        /// entry cut after any byte is either a bad line or the same
        /// request (a cut after the fields read changes nothing) — never a
        /// request to another host.
        #[test]
        fn cut_entries_never_name_another_host(
            method in "[A-Z]{1,7}",
            host in "[a-zA-Z0-9-]{1,12}(\\.[a-z0-9-]{1,8}){0,2}(:[0-9]{1,5})?",
            path in "(/[a-zA-Z0-9._~%-]{0,8}){1,3}",
            agent in "[ -~]{0,30}",
        ) {
            let line = entry(&method, &host, &path, &agent);
            let whole = parse(&line).map_err(|b| b.detail);
            let whole = whole.as_ref().map(|r| (r.host.as_deref(), r.path.as_deref()));
            prop_assert_eq!(whole, Ok((Some(host.as_str()), Some(path.as_str()))));
            for cut in 0..line.len() {
                let Some(prefix) = line.get(..cut) else { continue };
                if let Ok(r) = parse(prefix) {
                    prop_assert_eq!(r.host.as_deref(), Some(host.as_str()), "{}", prefix);
                    prop_assert_eq!(r.path.as_deref(), Some(path.as_str()), "{}", prefix);
                }
            }
        }

        #[test]
        fn any_text_parses_or_is_a_bad_line(line in "[ -~]{0,200}") {
            let _ = parse(&line);
        }
    }
}
