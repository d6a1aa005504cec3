//! One parsed request, whatever its format: what `policy simulate` replays
//! and what observations aggregate.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use eos_identity::SpaceId;
use serde::Serialize;
use time::OffsetDateTime;

use crate::bad::{Bad, BadReason, bad};
use crate::options::{EvidenceFilter, SpaceRule, TrustedProxies};

/// The terminating action of AWS WAF for a request (WAF logs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum WafAction {
    /// `ALLOW`.
    Allow,
    /// `BLOCK`.
    Block,
    /// `COUNT` (non-terminating; logged as the action in some records).
    Count,
    /// `CAPTCHA` (terminating when the request had no valid token).
    Captcha,
    /// `CHALLENGE` (terminating when the request had no valid token).
    Challenge,
}

impl WafAction {
    pub(crate) fn parse(s: &str) -> Option<WafAction> {
        match s {
            "ALLOW" => Some(WafAction::Allow),
            "BLOCK" => Some(WafAction::Block),
            "COUNT" => Some(WafAction::Count),
            "CAPTCHA" => Some(WafAction::Captcha),
            "CHALLENGE" => Some(WafAction::Challenge),
            _ => None,
        }
    }

    /// Did WAF stop the request from reaching the application?
    pub fn blocked(self) -> bool {
        matches!(
            self,
            WafAction::Block | WafAction::Captcha | WafAction::Challenge
        )
    }
}

/// One request as a log recorded it, with the space and the client address
/// already resolved. Borrowed from the line being parsed: copy out what you
/// keep.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    /// When (UTC).
    pub time: OffsetDateTime,
    /// The space called.
    pub space: &'a SpaceId,
    /// The client, after the trusted-proxy rule.
    pub client_ip: IpAddr,
    /// The connection's peer address as logged.
    pub peer_ip: IpAddr,
    /// The authenticated user as logged (not validated), if any.
    pub user: Option<&'a str>,
    /// HTTP method (`-` when the log has none).
    pub method: &'a str,
    /// Request path without the query (`-` when the log has none).
    pub path: &'a str,
    /// The Host, when the log records it.
    pub host: Option<&'a str>,
    /// HTTP status sent to the client, when the log records one (WAF logs
    /// usually do not).
    pub status: Option<u16>,
    /// WAF's terminating action (WAF logs only).
    pub waf_action: Option<WafAction>,
    /// The ALB connection trace id (`conn_trace_id`, ALB access logs
    /// only): the same id as the connection's entry in the connection log.
    pub conn_trace_id: Option<&'a str>,
    /// `time` as parsed, for the aggregator's hot path (no calendar math).
    pub(crate) stamp: Stamp,
    /// The space's slot in the parser thread's space cache, so the
    /// aggregator finds the space without hashing its name.
    pub(crate) space_slot: SpaceSlot,
    /// [`LogRecord::is_evidence`] under the scan's own filter, decided once
    /// by the parser.
    pub(crate) evidence: bool,
}

/// Where a parser thread's space cache keeps a space: the cache's
/// generation (it is emptied when it grows too large) and the index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpaceSlot {
    pub generation: u32,
    pub index: u32,
}

/// Records are equal when what they say is: the parser's bookkeeping
/// (`stamp` repeats `time`; the space's cache slot differs between
/// threads; `evidence` follows from the fields) does not take part.
impl PartialEq for LogRecord<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.time == o.time
            && self.space == o.space
            && self.client_ip == o.client_ip
            && self.peer_ip == o.peer_ip
            && self.user == o.user
            && self.method == o.method
            && self.path == o.path
            && self.host == o.host
            && self.status == o.status
            && self.waf_action == o.waf_action
            && self.conn_trace_id == o.conn_trace_id
    }
}

impl Eq for LogRecord<'_> {}

impl LogRecord<'_> {
    /// Does this request count as evidence under `filter`? (The time window
    /// is applied before records are produced.)
    pub fn is_evidence(&self, filter: &EvidenceFilter, format_has_users: bool) -> bool {
        if self.waf_action.is_some_and(WafAction::blocked) {
            return false;
        }
        if let Some(status) = self.status {
            let class = (status / 100) as u8;
            if !filter.status_classes.contains(&class) || filter.exclude_statuses.contains(&status)
            {
                return false;
            }
        }
        if filter.require_user && format_has_users && self.user.is_none_or(str::is_empty) {
            return false;
        }
        true
    }
}

/// A timestamp as parsed: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Stamp {
    pub(crate) const MIN: Stamp = Stamp {
        secs: i64::MIN,
        nanos: 0,
    };
    pub(crate) const MAX: Stamp = Stamp {
        secs: i64::MAX,
        nanos: 0,
    };

    /// The stamp of `t`.
    pub(crate) fn of(t: OffsetDateTime) -> Stamp {
        Stamp {
            secs: t.unix_timestamp(),
            nanos: t.nanosecond(),
        }
    }

    /// Days since the epoch (UTC).
    pub(crate) fn day(self) -> i64 {
        self.secs.div_euclid(86_400)
    }

    pub(crate) fn nanos_total(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    pub(crate) fn to_datetime(self) -> Result<OffsetDateTime, Bad> {
        // Seconds and nanoseconds apart: no 128-bit division per line.
        OffsetDateTime::from_unix_timestamp(self.secs)
            .and_then(|t| t.replace_nanosecond(self.nanos))
            .map_err(|_| {
                Bad::new(
                    BadReason::BadTime,
                    format!("time {} out of range", self.secs),
                )
            })
    }
}

/// What a format parser extracts from one line, before the space and
/// client rules are applied.
#[derive(Debug, Default)]
pub(crate) struct Raw<'a> {
    pub time: Option<Stamp>,
    pub space: Option<Cow<'a, str>>,
    pub host: Option<Cow<'a, str>>,
    pub peer: Option<IpAddr>,
    pub xff: Option<Cow<'a, str>>,
    pub user: Option<Cow<'a, str>>,
    pub method: Option<Cow<'a, str>>,
    pub path: Option<Cow<'a, str>>,
    pub status: Option<u16>,
    pub waf_action: Option<WafAction>,
    pub conn_trace_id: Option<&'a str>,
}

/// The space named by `raw`: its own field first, else the rule. A label
/// taken from a Host is lower-cased (host names are case-insensitive, RFC
/// 4343); it is copied only when it has an upper-case letter.
pub(crate) fn space_name<'r>(raw: &'r Raw<'_>, rule: &SpaceRule) -> Result<Cow<'r, str>, Bad> {
    if let Some(s) = raw.space.as_deref().filter(|s| !s.is_empty()) {
        return Ok(Cow::Borrowed(s));
    }
    match rule {
        SpaceRule::HostLabel { suffix } => {
            let Some(host) = raw.host.as_deref().filter(|h| !h.is_empty() && *h != "-") else {
                return Err(Bad::new(BadReason::NoSpace, "no space field and no host"));
            };
            let host = strip_port(host);
            if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
                return bad(BadReason::NoSpace, "host is an IP address", host);
            }
            let label_end = match suffix {
                Some(suffix) => {
                    let lower_ok = host.len() > suffix.len()
                        && host
                            .get(host.len() - suffix.len()..)
                            .is_some_and(|t| t.eq_ignore_ascii_case(suffix));
                    if !lower_ok {
                        return bad(BadReason::NoSpace, "host outside the space suffix", host);
                    }
                    host.len() - suffix.len()
                }
                None => host.find('.').unwrap_or(host.len()),
            };
            let label = host.get(..label_end).unwrap_or_default();
            if label.contains('.') || label.is_empty() {
                return bad(BadReason::NoSpace, "host has no single space label", host);
            }
            if label.bytes().any(|b| b.is_ascii_uppercase()) {
                return Ok(Cow::Owned(label.to_ascii_lowercase()));
            }
            Ok(Cow::Borrowed(label))
        }
        SpaceRule::PathPrefix { prefix } => {
            let path = raw.path.as_deref().unwrap_or_default();
            let Some(rest) = path.strip_prefix(prefix.as_str()) else {
                return bad(BadReason::NoSpace, "path outside the space prefix", path);
            };
            let seg = rest.split(['/', '?']).next().unwrap_or_default();
            if seg.is_empty() {
                return bad(BadReason::NoSpace, "path has no space segment", path);
            }
            Ok(Cow::Borrowed(seg))
        }
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').and_then(|i| host.get(..=i)).unwrap_or(host);
    }
    match host.rfind(':') {
        Some(i) if host[..i].find(':').is_none() => &host[..i],
        _ => host,
    }
}

/// An address as logged, possibly with a port: `1.2.3.4`, `1.2.3.4:80`,
/// `2001:db8::1`, `[2001:db8::1]:443`, and the ALB form `2001:db8::1:443`
/// when `port_required` (ALB always logs `client:port`).
pub(crate) fn parse_addr(s: &str, port_required: bool) -> Option<IpAddr> {
    let s = s.trim();
    if !port_required && let Some(a) = ipv4(s) {
        return Some(IpAddr::V4(a));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let tail = rest.get(end + 1..)?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return rest
            .get(..end)?
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    if !port_required && let Ok(a) = s.parse::<IpAddr>() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    if let Some(a) = ipv4(host) {
        return Some(IpAddr::V4(a));
    }
    // Without a required port only IPv4 takes a port unbracketed: a bare
    // IPv6 address already parsed above.
    if port_required {
        return host.parse::<IpAddr>().ok();
    }
    None
}

/// A dotted-quad IPv4 address exactly as `Ipv4Addr::from_str` reads one
/// (four decimal octets of one to three digits, no leading zero, each at
/// most 255), without going through std's combined v4/v6 parser: this is
/// the address of nearly every log line. A property test holds it to std.
fn ipv4(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while let Some(&c) = b.get(i)
            && c.is_ascii_digit()
            && i - start < 3
        {
            v = v * 10 + u32::from(c - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *octet = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(Ipv4Addr::from(octets))
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The client address: see [`TrustedProxies`].
pub(crate) fn resolve_client(
    peer: IpAddr,
    xff: Option<&str>,
    trusted: &TrustedProxies,
) -> Result<IpAddr, Bad> {
    // A dual-stack listener sees an IPv4 peer as ::ffff:a.b.c.d, and a proxy
    // may forward that form too: compare and answer in the IPv4 form, or an
    // IPv4 proxy would not be recognised and every client would be the proxy.
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return Ok(peer);
    }
    let Some(xff) = xff.filter(|x| !x.trim().is_empty() && x.trim() != "-") else {
        return Ok(peer);
    };
    let mut leftmost = peer;
    for entry in xff.rsplit(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some(addr) = parse_addr(entry, false).map(|a| a.to_canonical()) else {
            // An entry we cannot read sits between us and the client:
            // everything left of it is unverifiable, so the line is unusable.
            return bad(BadReason::BadForwardedFor, "x-forwarded-for entry", entry);
        };
        if !trusted.contains(addr) {
            return Ok(addr);
        }
        leftmost = addr;
    }
    // Every hop is a trusted proxy: the request started at the left-most one.
    Ok(leftmost)
}

/// Status text → status (100–599); `-` and `000` (CloudFront: client gave
/// up) → `None`.
pub(crate) fn parse_status(s: &str) -> Result<Option<u16>, Bad> {
    if s == "-" || s == "000" || s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u16>() {
        Ok(n) if (100..=599).contains(&n) => Ok(Some(n)),
        _ => bad(BadReason::BadStatus, "status", s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn records_compare_by_what_they_say() {
        let space = SpaceId::new("acme").unwrap_or_else(|e| panic!("{e}"));
        let stamp = Stamp { secs: 1, nanos: 0 };
        let a = LogRecord {
            time: stamp.to_datetime().unwrap_or_else(|b| panic!("{b:?}")),
            space: &space,
            client_ip: ip("203.0.113.9"),
            peer_ip: ip("10.0.1.5"),
            user: Some("alice"),
            method: "POST",
            path: "/rpc/x",
            host: None,
            status: Some(200),
            waf_action: None,
            conn_trace_id: None,
            stamp,
            space_slot: SpaceSlot {
                generation: 0,
                index: 3,
            },
            evidence: true,
        };
        let mut b = a.clone();
        b.space_slot.index = 7;
        assert_eq!(a, b);
        b.status = Some(302);
        assert_ne!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn ipv4_reads_what_std_reads(s in "([0-9]{1,4}\\.){3}[0-9]{1,4}|[0-9.]{0,18}|[0-9a-f:.x+ ]{0,16}") {
            proptest::prop_assert_eq!(ipv4(&s), s.parse::<Ipv4Addr>().ok());
        }

        #[test]
        fn ipv4_reads_every_address(a: u32) {
            let a = Ipv4Addr::from(a);
            proptest::prop_assert_eq!(ipv4(&a.to_string()), Some(a));
        }
    }

    #[test]
    fn ipv4_edges() {
        for s in ["0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.1"] {
            assert_eq!(ipv4(s), s.parse().ok(), "{s}");
        }
        for s in [
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "1.2.3.0004",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.-4",
            "1111.2.3.4",
        ] {
            assert_eq!(ipv4(s), None, "{s}");
            assert_eq!(s.parse::<Ipv4Addr>().ok(), None, "{s}");
        }
    }

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(
            parse_addr("192.168.131.39:2817", true),
            Some(ip("192.168.131.39"))
        );
        assert_eq!(
            parse_addr("2001:db8::1:2817", true),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            parse_addr("[2001:db8::1]:443", true),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_addr("2001:db8::1", false), Some(ip("2001:db8::1")));
        assert_eq!(parse_addr("[2001:db8::1]", false), Some(ip("2001:db8::1")));
        assert_eq!(
            parse_addr("203.0.113.9:51234", false),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(parse_addr(" 203.0.113.9 ", false), Some(ip("203.0.113.9")));
        assert_eq!(parse_addr("unknown", false), None);
        assert_eq!(parse_addr("1.2.3.4:99999x", false), None);
        assert_eq!(parse_addr("192.168.131.39", true), None);
    }

    #[test]
    fn rightmost_untrusted_forwarded_for_entry_is_the_client() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap_or_default();
        let peer = ip("10.0.1.5");
        // The left-most entry is whatever the client claimed: never trusted.
        let got = resolve_client(peer, Some("6.6.6.6, 203.0.113.9, 10.0.2.2"), &t);
        assert_eq!(got, Ok(ip("203.0.113.9")));
        // Untrusted peer: its forwarded-for is attacker-controlled.
        let got = resolve_client(ip("198.51.100.1"), Some("203.0.113.9"), &t);
        assert_eq!(got, Ok(ip("198.51.100.1")));
        // No trusted proxies: the peer.
        let got = resolve_client(peer, Some("203.0.113.9"), &TrustedProxies::default());
        assert_eq!(got, Ok(peer));
        // All hops trusted: the left-most hop.
        let got = resolve_client(peer, Some("10.9.9.9 , 10.0.2.2"), &t);
        assert_eq!(got, Ok(ip("10.9.9.9")));
        // Spaces, empty entries and ports are tolerated.
        let got = resolve_client(peer, Some(" 203.0.113.9:4711 ,, 10.0.2.2 "), &t);
        assert_eq!(got, Ok(ip("203.0.113.9")));
        // A garbage entry right of the client makes the line unusable...
        let got = resolve_client(peer, Some("203.0.113.9, garbage, 10.0.2.2"), &t);
        assert_eq!(got.map_err(|b| b.reason), Err(BadReason::BadForwardedFor));
        // ...but garbage left of the first untrusted entry is never looked at.
        let got = resolve_client(peer, Some("garbage, 203.0.113.9"), &t);
        assert_eq!(got, Ok(ip("203.0.113.9")));
    }

    #[test]
    fn space_from_host_label_and_path_prefix() {
        let raw = Raw {
            host: Some("acme.entityos.cloud:443".into()),
            path: Some("/s/globex/rpc".into()),
            ..Raw::default()
        };
        let host = SpaceRule::HostLabel { suffix: None };
        assert_eq!(space_name(&raw, &host).as_deref(), Ok("acme"));
        let suffixed = SpaceRule::HostLabel {
            suffix: Some(".entityos.cloud".into()),
        };
        assert_eq!(space_name(&raw, &suffixed).as_deref(), Ok("acme"));
        let other = SpaceRule::HostLabel {
            suffix: Some(".example.com".into()),
        };
        assert_eq!(
            space_name(&raw, &other).map_err(|b| b.reason),
            Err(BadReason::NoSpace)
        );
        let prefix = SpaceRule::PathPrefix {
            prefix: "/s/".into(),
        };
        assert_eq!(space_name(&raw, &prefix).as_deref(), Ok("globex"));
        let ip_host = Raw {
            host: Some("10.0.2.105:773".into()),
            ..Raw::default()
        };
        assert_eq!(
            space_name(&ip_host, &host).map_err(|b| b.reason),
            Err(BadReason::NoSpace)
        );
    }
}
