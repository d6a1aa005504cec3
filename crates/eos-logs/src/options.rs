//! What a scan reads and what counts as evidence. Every default is written
//! down here, once, and documented in docs/LOG-FORMATS.md.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::OptionsError;

/// The log format of every input of one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// The entityOS usage log: JSON lines, field names per [`FieldMap`].
    #[default]
    Usage,
    /// AWS Application Load Balancer access logs.
    Alb,
    /// Amazon CloudFront standard logs (legacy and v2 W3C), `#Fields` header.
    Cloudfront,
    /// AWS WAF web ACL traffic logs (JSON lines).
    Waf,
}

impl Format {
    /// Stable lower-case name (`usage`, `alb`, `cloudfront`, `waf`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Usage => "usage",
            Format::Alb => "alb",
            Format::Cloudfront => "cloudfront",
            Format::Waf => "waf",
        }
    }

    /// Whether the format records an authenticated user (only the usage log does).
    pub fn has_users(self) -> bool {
        matches!(self, Format::Usage)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Format, OptionsError> {
        match s {
            "usage" => Ok(Format::Usage),
            "alb" => Ok(Format::Alb),
            "cloudfront" => Ok(Format::Cloudfront),
            "waf" => Ok(Format::Waf),
            other => Err(OptionsError::UnknownFormat(other.to_owned())),
        }
    }
}

/// Where each field of a usage-log line lives: a dotted path into the JSON
/// object (`request.client.ip` reaches `{"request":{"client":{"ip":..}}}`).
/// Unknown fields in the log are ignored. An empty path means "not logged".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldMap {
    /// Request time: RFC 3339 string, or a number of seconds (or of
    /// milliseconds when ≥ 10^11) since the Unix epoch. Default `timestamp`.
    pub time: String,
    /// Space id. Default `space`.
    pub space: String,
    /// Authenticated user id. Default `user`.
    pub user: String,
    /// HTTP method. Default `method`.
    pub method: String,
    /// Request path. Default `path`.
    pub path: String,
    /// HTTP status (number or numeric string). Default `status`.
    pub status: String,
    /// The connection's peer address (the last hop). Default `source_ip`.
    pub source_ip: String,
    /// The X-Forwarded-For header as received (string, or array of strings).
    /// Default `x_forwarded_for`.
    pub x_forwarded_for: String,
    /// Host header (used by a host-label space rule when `space` is absent).
    /// Default `host`.
    pub host: String,
}

impl Default for FieldMap {
    fn default() -> FieldMap {
        FieldMap {
            time: "timestamp".to_owned(),
            space: "space".to_owned(),
            user: "user".to_owned(),
            method: "method".to_owned(),
            path: "path".to_owned(),
            status: "status".to_owned(),
            source_ip: "source_ip".to_owned(),
            x_forwarded_for: "x_forwarded_for".to_owned(),
            host: "host".to_owned(),
        }
    }
}

impl FieldMap {
    /// `(field name, dotted path)` for each mapped field, in [`crate::usage`]
    /// slot order.
    pub(crate) fn paths(&self) -> [(&'static str, &str); 9] {
        [
            ("time", &self.time),
            ("space", &self.space),
            ("user", &self.user),
            ("method", &self.method),
            ("path", &self.path),
            ("status", &self.status),
            ("source_ip", &self.source_ip),
            ("x_forwarded_for", &self.x_forwarded_for),
            ("host", &self.host),
        ]
    }
}

/// How the space of a request is found in AWS logs (which carry no space
/// field), and in usage logs whose `space` field is absent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum SpaceRule {
    /// The first DNS label of the Host (`acme.entityos.cloud` → `acme`).
    /// With `suffix`, only hosts ending in it count (`.entityos.cloud`);
    /// other hosts are counted as `no_space`. IP-literal hosts never match.
    HostLabel {
        /// Required host suffix, e.g. `.entityos.cloud`.
        #[serde(default)]
        suffix: Option<String>,
    },
    /// The path segment after `prefix` (`/s/acme/rpc` with `/s/` → `acme`).
    PathPrefix {
        /// Path prefix ending in `/`, e.g. `/s/`.
        prefix: String,
    },
}

impl Default for SpaceRule {
    fn default() -> SpaceRule {
        SpaceRule::HostLabel { suffix: None }
    }
}

/// Proxies whose X-Forwarded-For entries are believed. Client resolution:
/// when the connection's peer is not a trusted proxy, the peer is the
/// client (its X-Forwarded-For is attacker-controlled). Otherwise walk the
/// X-Forwarded-For chain from the right and take the first entry that is
/// not a trusted proxy; the left-most entry is never trusted blindly. With
/// no trusted proxies (the default), the peer is always the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trust exactly these networks.
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        let nets = nets.into_iter().map(|n| canonical_net(n).trunc()).collect();
        TrustedProxies { nets }
    }

    /// Parse CIDRs or bare addresses (`10.0.0.0/8`, `2001:db8::1`).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<TrustedProxies, OptionsError> {
        let mut nets = Vec::with_capacity(items.len());
        for item in items {
            let s = item.as_ref().trim();
            let net = match s.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match s.parse::<std::net::IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => return Err(OptionsError::TrustedProxy(s.to_owned())),
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies::new(nets))
    }

    /// The configured networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Is `addr` a trusted proxy? An IPv4-mapped IPv6 address is the IPv4
    /// address it maps.
    pub fn contains(&self, addr: std::net::IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// The client address of a request that arrived from `peer` with these
    /// `X-Forwarded-For` values (several header lines are read as one list,
    /// RFC 9110 §5.3), by the rule above — the same one log extraction uses.
    /// `None`: a trusted proxy forwarded an entry that is not an address, so
    /// the client cannot be known.
    pub fn client_address(
        &self,
        peer: std::net::IpAddr,
        xff: Option<&str>,
    ) -> Option<std::net::IpAddr> {
        crate::record::resolve_client(peer, xff, self).ok()
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network
/// it maps (`10.0.0.0/8`), so it matches the canonical addresses compared
/// against it.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n);
    }
    net
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        TrustedProxies::parse(&items).map_err(serde::de::Error::custom)
    }
}

/// What counts as evidence that an address legitimately calls a space.
/// Requests failing a filter still appear in the status counts of their
/// (space, address) pair, never in `requests`, first/last seen or days.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceFilter {
    /// Status classes that count (1–5). Default `[2, 3]`.
    pub status_classes: Vec<u8>,
    /// Statuses that never count, whatever their class. Default
    /// `[401, 403, 429]`.
    pub exclude_statuses: Vec<u16>,
    /// Only requests with an authenticated user count. Applies to formats
    /// that record users (the usage log); default `true`.
    pub require_user: bool,
    /// A (space, address) pair needs at least this many evidence requests
    /// to be reported. Default 1.
    pub min_requests: u64,
    /// ... and evidence on at least this many distinct UTC days. Default 1.
    pub min_distinct_days: u32,
}

impl Default for EvidenceFilter {
    fn default() -> EvidenceFilter {
        EvidenceFilter {
            status_classes: vec![2, 3],
            exclude_statuses: vec![401, 403, 429],
            require_user: true,
            min_requests: 1,
            min_distinct_days: 1,
        }
    }
}

/// The `[logs]` config section: everything about a scan that is a property
/// of the deployment rather than of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Trusted proxy CIDRs. Default: none.
    pub trusted_proxies: TrustedProxies,
    /// Usage-log field mapping.
    pub fields: FieldMap,
    /// Space rule for AWS formats.
    pub space_rule: SpaceRule,
    /// Evidence filters.
    pub evidence: EvidenceFilter,
    /// Longest accepted line in bytes; longer lines are skipped and counted
    /// as `line_too_long`. Default 1 MiB.
    pub max_line_bytes: Option<usize>,
}

/// Everything one scan needs. `Default` is the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Input format. Default usage log.
    pub format: Format,
    /// Trusted proxies. Default: none (the peer is the client).
    pub trusted_proxies: TrustedProxies,
    /// Usage-log field mapping.
    pub fields: FieldMap,
    /// Space rule for AWS formats. Default: first label of the Host.
    pub space_rule: SpaceRule,
    /// Evidence filters.
    pub evidence: EvidenceFilter,
    /// Only requests at or after this instant. Default: no bound.
    pub since: Option<OffsetDateTime>,
    /// Only requests before this instant. Default: no bound.
    pub until: Option<OffsetDateTime>,
    /// Stop at the first bad line with an error. Default false.
    pub strict: bool,
    /// Accept a scan in which no line could be used. Default false: such a
    /// scan fails with [`ScanError::NothingUsable`](crate::ScanError),
    /// naming what to check (a wrong format, a field mapping).
    pub allow_unusable: bool,
    /// How many bad lines to keep as examples. Default 5.
    pub max_bad_examples: usize,
    /// Longest accepted line. Default 1 MiB.
    pub max_line_bytes: usize,
    /// Parser threads. Default: the available parallelism.
    pub threads: usize,
    /// Bytes per range of a regular file, which the parsers read
    /// themselves (`scan.rs`). Not a user setting: tests and the fuzz
    /// targets make it small.
    pub(crate) range_bytes: u64,
}

impl Default for ScanOptions {
    fn default() -> ScanOptions {
        ScanOptions {
            format: Format::Usage,
            trusted_proxies: TrustedProxies::default(),
            fields: FieldMap::default(),
            space_rule: SpaceRule::default(),
            evidence: EvidenceFilter::default(),
            since: None,
            until: None,
            strict: false,
            allow_unusable: false,
            max_bad_examples: 5,
            max_line_bytes: ScanOptions::DEFAULT_MAX_LINE_BYTES,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            range_bytes: ScanOptions::RANGE_BYTES,
        }
    }
}

impl ScanOptions {
    /// Read regular files in ranges of `bytes` (at least 1): only in fuzz
    /// builds (`cargo fuzz` sets `--cfg fuzzing`), so that small inputs
    /// cross range boundaries. Not a setting of the product.
    #[cfg(fuzzing)]
    pub fn set_range_bytes(&mut self, bytes: u64) {
        self.range_bytes = bytes.max(1);
    }

    /// Default longest line: 1 MiB.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

    /// Bytes per range of a regular file. Each parser reads its ranges into
    /// a buffer of its own: the lines are parsed on the core that copied
    /// them, not fetched from a reader's. (128 KiB to 4 MiB measured alike.)
    const RANGE_BYTES: u64 = 1 << 20;

    /// Defaults for `format`.
    pub fn new(format: Format) -> ScanOptions {
        ScanOptions {
            format,
            ..ScanOptions::default()
        }
    }

    /// Options from a `[logs]` config section.
    pub fn from_config(format: Format, config: &LogsConfig) -> ScanOptions {
        ScanOptions {
            format,
            trusted_proxies: config.trusted_proxies.clone(),
            fields: config.fields.clone(),
            space_rule: config.space_rule.clone(),
            evidence: config.evidence.clone(),
            max_line_bytes: config
                .max_line_bytes
                .unwrap_or(ScanOptions::DEFAULT_MAX_LINE_BYTES),
            ..ScanOptions::default()
        }
    }

    /// Check the options for contradictions before any input is read.
    pub fn validate(&self) -> Result<(), OptionsError> {
        crate::usage::PathTree::new(&self.fields)?;
        if let Some(bad) = self
            .evidence
            .status_classes
            .iter()
            .find(|c| !(1..=5).contains(*c))
        {
            return Err(OptionsError::StatusClass(*bad));
        }
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s >= u
        {
            return Err(OptionsError::EmptyWindow);
        }
        if let SpaceRule::PathPrefix { prefix } = &self.space_rule
            && !prefix.starts_with('/')
        {
            return Err(OptionsError::PathPrefix(prefix.clone()));
        }
        if self.max_line_bytes < 1024 {
            return Err(OptionsError::MaxLine(self.max_line_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn client_address_follows_the_trusted_proxy_rule() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("192.0.2.1"), Some("198.51.100.1")),
            Some(ip("192.0.2.1"))
        );
        let lb = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap_or_default();
        // Untrusted peer: its forwarded header is the attacker's.
        assert_eq!(
            lb.client_address(ip("192.0.2.1"), Some("198.51.100.1")),
            Some(ip("192.0.2.1"))
        );
        // Trusted peer: the right-most untrusted entry.
        assert_eq!(
            lb.client_address(ip("10.0.0.5"), Some("203.0.113.9, 198.51.100.1, 10.0.0.4")),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(lb.client_address(ip("10.0.0.5"), Some("junk")), None);
    }

    #[test]
    fn ipv4_mapped_addresses_are_compared_and_answered_as_ipv4() {
        // A dual-stack listener sees the IPv4 proxy 10.0.0.5 as
        // ::ffff:10.0.0.5; it is still the trusted proxy.
        let lb = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap_or_default();
        assert!(lb.contains(ip("::ffff:10.0.0.5")));
        assert_eq!(
            lb.client_address(ip("::ffff:10.0.0.5"), Some("203.0.113.60")),
            Some(ip("203.0.113.60"))
        );
        // Mapped entries in the header are read as IPv4 too: a mapped form of
        // a trusted hop is skipped, a mapped client is answered as IPv4.
        assert_eq!(
            lb.client_address(ip("10.0.0.5"), Some("::ffff:203.0.113.61, ::ffff:10.0.0.4")),
            Some(ip("203.0.113.61"))
        );
        // No forwarded header, or an untrusted peer: the peer, as IPv4.
        assert_eq!(
            lb.client_address(ip("::ffff:10.0.0.5"), None),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            TrustedProxies::default().client_address(ip("::ffff:192.0.2.1"), Some("1.1.1.1")),
            Some(ip("192.0.2.1"))
        );
        // A mapped network in the configuration is the IPv4 network.
        let mapped = TrustedProxies::parse(&["::ffff:10.0.0.0/104"]).unwrap_or_default();
        assert_eq!(mapped, lb);
        assert!(mapped.contains(ip("10.1.2.3")));
    }
}
