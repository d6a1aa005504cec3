//! Parsing addresses and CIDRs the way an allowlist must: strictly, with every
//! normalisation reported and every ambiguity refused.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{IpSet, IpSetBuilder};

/// Why a token is not an address or CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    #[error("empty address")]
    Empty,
    /// `fe80::1%eth0`: a zone only means something on one host.
    #[error("zone ids are not allowed in an allowlist")]
    ZoneId,
    /// `010.1.1.1`: octal to some parsers, decimal to others.
    #[error("leading zero in an IPv4 octet is ambiguous (octal or decimal)")]
    LeadingZero,
    /// Not an IPv4 or IPv6 address.
    #[error("not an IP address")]
    InvalidAddress,
    /// `/abc`, `/-1`, or a prefix longer than the family allows.
    #[error("invalid prefix length")]
    InvalidPrefix,
    /// More than one token on a line.
    #[error("unexpected text after the address")]
    TrailingText,
    /// A line of megabytes: not an address list.
    #[error("line too long")]
    LineTooLong,
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
}

/// A token that could not be parsed, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: `{token}`")]
pub struct ParseError {
    /// Why.
    pub kind: ParseErrorKind,
    /// The offending token (trimmed, at most 80 characters).
    pub token: String,
}

impl ParseError {
    fn new(kind: ParseErrorKind, token: &str) -> Self {
        let token: String = token.chars().take(80).collect();
        Self { kind, token }
    }
}

/// A parsed entry and what normalisation it needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedNet {
    /// The canonical network: host bits cleared, IPv4-mapped IPv6 as IPv4.
    pub net: IpNet,
    /// The input had host bits set (`192.0.2.7/24`); `net` has them cleared.
    pub host_bits_cleared: bool,
    /// The input was IPv4-mapped IPv6 (`::ffff:192.0.2.7`); `net` is IPv4.
    pub unmapped: bool,
}

/// Parse one address or CIDR.
///
/// Rules: surrounding whitespace is trimmed; a bare address is a host route
/// (`/32` or `/128`); host bits are cleared and reported; IPv4-mapped IPv6
/// with a prefix of at least 96 becomes IPv4; zone ids and leading zeros in
/// IPv4 octets are refused.
pub fn parse_net(input: &str) -> Result<ParsedNet, ParseError> {
    let token = input.trim();
    if token.is_empty() {
        return Err(ParseError::new(ParseErrorKind::Empty, token));
    }
    if token.split_whitespace().nth(1).is_some() {
        return Err(ParseError::new(ParseErrorKind::TrailingText, token));
    }
    if token.contains('%') {
        return Err(ParseError::new(ParseErrorKind::ZoneId, token));
    }
    let (addr_part, prefix_part) = match token.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (token, None),
    };
    let addr = parse_addr_strict(addr_part).map_err(|k| ParseError::new(k, token))?;
    let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_part {
        None => max_len,
        Some(p) => {
            // Digits only: `u8::from_str` would accept a leading `+`.
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::new(ParseErrorKind::InvalidPrefix, token));
            }
            match p.parse::<u8>() {
                Ok(n) if n <= max_len => n,
                _ => return Err(ParseError::new(ParseErrorKind::InvalidPrefix, token)),
            }
        }
    };
    let (net, unmapped) = match addr {
        IpAddr::V4(a) => (v4_net(a, prefix, token)?, false),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => (v4_net(v4, prefix - 96, token)?, true),
            _ => (v6_net(a, prefix, token)?, false),
        },
    };
    let host_bits_cleared = net.addr() != net.network();
    Ok(ParsedNet {
        net: net.trunc(),
        host_bits_cleared,
        unmapped,
    })
}

fn v4_net(a: Ipv4Addr, len: u8, token: &str) -> Result<IpNet, ParseError> {
    Ipv4Net::new(a, len)
        .map(IpNet::V4)
        .map_err(|_| ParseError::new(ParseErrorKind::InvalidPrefix, token))
}

fn v6_net(a: Ipv6Addr, len: u8, token: &str) -> Result<IpNet, ParseError> {
    Ipv6Net::new(a, len)
        .map(IpNet::V6)
        .map_err(|_| ParseError::new(ParseErrorKind::InvalidPrefix, token))
}

/// Parse a bare address, refusing zone ids and IPv4 leading zeros with their
/// own reasons. IPv4-mapped IPv6 is returned as written (IPv6).
pub fn parse_addr_strict(s: &str) -> Result<IpAddr, ParseErrorKind> {
    if s.contains('%') {
        return Err(ParseErrorKind::ZoneId);
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(a);
    }
    if s.contains('.') && !s.contains(':') && has_leading_zero_octet(s) {
        return Err(ParseErrorKind::LeadingZero);
    }
    Err(ParseErrorKind::InvalidAddress)
}

fn has_leading_zero_octet(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.iter().any(|p| p.len() > 1 && p.starts_with('0'))
}

/// Fast path for the common case: a strict dotted-quad IPv4 address (no
/// leading zeros, no prefix). Returns `None` for anything else, which the
/// caller hands to [`parse_net`] for a full parse and a precise error.
#[inline]
pub fn parse_v4_fast(b: &[u8]) -> Option<u32> {
    let mut acc: u32 = 0;
    let mut octets = 0u32;
    let mut i = 0;
    let n = b.len();
    while octets < 4 {
        let start = i;
        let mut v: u32 = 0;
        while i < n && i - start < 3 {
            let d = b[i].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v * 10 + d as u32;
            i += 1;
        }
        let len = i - start;
        if len == 0 || v > 255 || (len > 1 && b[start] == b'0') {
            return None;
        }
        acc = (acc << 8) | v;
        octets += 1;
        if octets < 4 {
            if i >= n || b[i] != b'.' {
                return None;
            }
            i += 1;
        }
    }
    if i == n { Some(acc) } else { None }
}

/// Where a line came from, for messages: `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {error}")]
pub struct LineError {
    /// File name, or `<stdin>`.
    pub source_name: String,
    /// 1-based line number.
    pub line: u64,
    /// The parse failure.
    pub error: ParseError,
}

/// Reading a list failed: a bad line, or the reader itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A line that is not an address or CIDR.
    #[error(transparent)]
    Line(#[from] LineError),
    /// The underlying reader failed.
    #[error("{source_name}: read failed: {source}")]
    Io {
        /// File name, or `<stdin>`.
        source_name: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A normalisation applied to an input line (reported, not an error).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// File name, or `<stdin>`.
    pub source_name: String,
    /// 1-based line number.
    pub line: u64,
    /// The token as written.
    pub token: String,
    /// What it was normalised to.
    pub normalised: String,
    /// Why.
    pub reason: &'static str,
}

/// How many notices are kept per read; the total is always counted.
pub const MAX_NOTICES: usize = 100;

/// Totals of a read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Lines read, including blank and comment lines.
    pub lines: u64,
    /// Address or CIDR entries read.
    pub entries: u64,
    /// Entries that needed normalisation (host bits, mapped IPv6).
    pub normalised: u64,
    /// The first [`MAX_NOTICES`] normalisations.
    pub notices: Vec<Notice>,
}

/// Read one address or CIDR per line into `builder`. Blank lines and `#`
/// comments (whole-line or trailing) are skipped, CRLF line ends accepted.
/// The first bad line stops the read with its file, line and token.
///
/// The input is read in large blocks; each block is split at line ends and
/// parsed on all available cores. Memory stays bounded by the block size
/// plus the collected addresses.
pub fn read_list<R: Read>(
    mut reader: R,
    source_name: &str,
    builder: &mut IpSetBuilder,
    stats: &mut ReadStats,
) -> Result<(), ReadError> {
    const BLOCK: usize = 8 << 20;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + 4096);
    let mut base_line = 0u64;
    let mut eof = false;
    while !eof {
        // Fill the block (the carried-over partial line is already at the front).
        let mut filled = buf.len();
        buf.resize(BLOCK, 0);
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        source_name: source_name.to_owned(),
                        source,
                    });
                }
            }
        }
        buf.truncate(filled);
        // Complete lines only; the tail waits for the next block (or EOF).
        let cut = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                // No line end in a whole block: no address is that long.
                None => {
                    return Err(ReadError::Line(LineError {
                        source_name: source_name.to_owned(),
                        line: base_line + 1,
                        error: ParseError::new(
                            ParseErrorKind::LineTooLong,
                            &String::from_utf8_lossy(buf.get(..80).unwrap_or_default()),
                        ),
                    }));
                }
            }
        };
        let pieces = split_at_lines(&buf[..cut], if cut < (256 << 10) { 1 } else { threads });
        let results: Vec<Piece> = if pieces.len() == 1 {
            pieces.iter().map(|p| parse_piece(p, source_name)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = pieces
                    .iter()
                    .map(|p| scope.spawn(move || parse_piece(p, source_name)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        for mut piece in results {
            if let Some(mut err) = piece.error.take() {
                err.line += base_line;
                return Err(ReadError::Line(err));
            }
            builder.append(&mut piece.builder);
            stats.lines += piece.lines;
            stats.entries += piece.entries;
            stats.normalised += piece.normalised;
            for mut n in piece.notices {
                if stats.notices.len() < MAX_NOTICES {
                    n.line += base_line;
                    stats.notices.push(n);
                }
            }
            base_line += piece.lines;
        }
        buf.drain(..cut);
    }
    Ok(())
}

/// Split `data` into at most `n` pieces, each ending at a line end.
fn split_at_lines(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    for i in 0..n {
        if rest.is_empty() {
            break;
        }
        let left = n - i;
        if left == 1 {
            out.push(rest);
            break;
        }
        let target = rest.len() / left;
        let cut = match memchr::memchr(b'\n', rest.get(target..).unwrap_or_default()) {
            Some(j) => target + j + 1,
            None => rest.len(),
        };
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out
}

/// What one worker parsed; line numbers are relative to the piece.
#[derive(Default)]
struct Piece {
    builder: IpSetBuilder,
    lines: u64,
    entries: u64,
    normalised: u64,
    notices: Vec<Notice>,
    error: Option<LineError>,
}

fn parse_piece(data: &[u8], source_name: &str) -> Piece {
    let mut piece = Piece::default();
    let mut stats = ReadStats::default();
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        piece.lines += 1;
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = parse_v4_fast(body) {
            piece.builder.insert_v4_u32(v);
            piece.entries += 1;
            continue;
        }
        if let Err(e) = parse_slow_line(
            body,
            source_name,
            piece.lines,
            &mut piece.builder,
            &mut stats,
        ) {
            piece.error = Some(e);
            break;
        }
    }
    piece.entries += stats.entries;
    piece.normalised = stats.normalised;
    piece.notices = stats.notices;
    piece
}

fn parse_slow_line(
    body: &[u8],
    source_name: &str,
    lineno: u64,
    builder: &mut IpSetBuilder,
    stats: &mut ReadStats,
) -> Result<(), LineError> {
    let line_err = |error: ParseError| LineError {
        source_name: source_name.to_owned(),
        line: lineno,
        error,
    };
    let text = std::str::from_utf8(body).map_err(|_| {
        line_err(ParseError::new(
            ParseErrorKind::NotUtf8,
            &String::from_utf8_lossy(body),
        ))
    })?;
    let text = match text.split_once('#') {
        Some((before, _)) => before,
        None => text,
    }
    .trim();
    if text.is_empty() {
        return Ok(());
    }
    let parsed = parse_net(text).map_err(line_err)?;
    stats.entries += 1;
    if parsed.host_bits_cleared || parsed.unmapped {
        stats.normalised += 1;
        if stats.notices.len() < MAX_NOTICES {
            stats.notices.push(Notice {
                source_name: source_name.to_owned(),
                line: lineno,
                token: text.to_owned(),
                normalised: parsed.net.to_string(),
                reason: if parsed.host_bits_cleared {
                    "host bits cleared"
                } else {
                    "IPv4-mapped IPv6 read as IPv4"
                },
            });
        }
    }
    builder.insert_net(parsed.net);
    Ok(())
}

/// Convenience: parse a whole in-memory list into a set.
pub fn parse_list(text: &str, source_name: &str) -> Result<(IpSet, ReadStats), ReadError> {
    let mut b = IpSetBuilder::new();
    let mut stats = ReadStats::default();
    read_list(text.as_bytes(), source_name, &mut b, &mut stats)?;
    Ok((b.build(), stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<ParsedNet, ParseErrorKind> {
        parse_net(s).map_err(|e| e.kind)
    }

    #[test]
    fn bare_addresses_become_host_routes() {
        assert_eq!(p("192.0.2.44").unwrap().net.to_string(), "192.0.2.44/32");
        assert_eq!(
            p(" 2001:DB8::1 ").unwrap().net.to_string(),
            "2001:db8::1/128"
        );
    }

    #[test]
    fn host_bits_are_cleared_and_reported() {
        let r = p("192.0.2.7/24").unwrap();
        assert_eq!(r.net.to_string(), "192.0.2.0/24");
        assert!(r.host_bits_cleared);
        assert!(!p("192.0.2.0/24").unwrap().host_bits_cleared);
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let r = p("::ffff:1.2.3.4").unwrap();
        assert_eq!(r.net.to_string(), "1.2.3.4/32");
        assert!(r.unmapped);
        assert_eq!(
            p("::ffff:1.2.3.0/120").unwrap().net.to_string(),
            "1.2.3.0/24"
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(p("fe80::1%eth0"), Err(ParseErrorKind::ZoneId));
        assert_eq!(p("010.1.1.1"), Err(ParseErrorKind::LeadingZero));
        assert_eq!(p("1.2.3.4/33"), Err(ParseErrorKind::InvalidPrefix));
        assert_eq!(p("1.2.3.4/+8"), Err(ParseErrorKind::InvalidPrefix));
        assert_eq!(p("1.2.3.4/"), Err(ParseErrorKind::InvalidPrefix));
        assert_eq!(p("::/129"), Err(ParseErrorKind::InvalidPrefix));
        assert_eq!(p("1.2.3"), Err(ParseErrorKind::InvalidAddress));
        assert_eq!(p("1.2.3.4 5.6.7.8"), Err(ParseErrorKind::TrailingText));
        assert_eq!(p("   "), Err(ParseErrorKind::Empty));
        assert_eq!(p("example.com"), Err(ParseErrorKind::InvalidAddress));
    }

    #[test]
    fn fast_path_agrees_with_std() {
        for s in ["0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.1"] {
            let want = u32::from(s.parse::<Ipv4Addr>().unwrap());
            assert_eq!(parse_v4_fast(s.as_bytes()), Some(want), "{s}");
        }
        for s in [
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.4 ",
            "",
            "1..2.3",
            "1.2.3.4/32",
        ] {
            assert_eq!(parse_v4_fast(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn list_reports_file_and_line() {
        let err =
            parse_list("# office\n192.0.2.1\n\n10.0.0.0/8 # vpn\nnope\n", "a.txt").unwrap_err();
        assert_eq!(err.to_string(), "a.txt:5: not an IP address: `nope`");
    }

    #[test]
    fn huge_line_is_refused_not_buffered() {
        let text = "1.2.3.4\n".to_owned() + &"x".repeat(9 << 20);
        let err = parse_list(&text, "big").unwrap_err();
        assert!(err.to_string().starts_with("big:2: line too long"), "{err}");
    }

    #[test]
    fn parallel_blocks_keep_line_numbers() {
        // Large enough to be split across threads and blocks.
        let mut text = String::new();
        for i in 0..600_000u32 {
            text.push_str(&format!(
                "10.{}.{}.{}\n",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            ));
        }
        let (set, stats) = parse_list(&text, "big").unwrap();
        assert_eq!(stats.lines, 600_000);
        assert_eq!(set.v4_len(), 600_000);
        text.push_str("10.0.0.0/33\n");
        let err = parse_list(&text, "big").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("big:600001: invalid prefix length"),
            "{err}"
        );
    }

    #[test]
    fn list_skips_comments_and_crlf() {
        let (set, stats) = parse_list("192.0.2.1\r\n# x\r\n\r\n192.0.2.0/31 # y\r\n", "a").unwrap();
        assert_eq!(set.to_cidrs().len(), 1);
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.lines, 4);
    }
}
