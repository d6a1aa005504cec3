//! AWS Application Load Balancer *connection* logs ("Connection logs for
//! your Application Load Balancer"): one entry per TLS connection attempt,
//! space-separated, the leaf certificate's subject in double quotes:
//!
//! ```text
//! timestamp client_ip client_port listener_port tls_protocol tls_cipher
//! tls_handshake_latency "leaf_client_cert_subject" leaf_client_cert_validity
//! leaf_client_cert_serial_number tls_verify_status conn_trace_id ...
//! ```
//!
//! Fields 1-11 are required; `conn_trace_id` (12) is read when present (it
//! links a connection to its requests in the access log), later fields are
//! ignored (AWS adds fields at the end). The certificate fields are `-`
//! when the client sent none (or the listener does not ask for one).
//!
//! These entries name no host, so no space: they are evidence for the
//! certificate gate (`eos_policy::CertSimulator`), not observations. They
//! are read front to back by one thread ([`for_each_connection`]): a
//! connection log holds one line per connection, far fewer than requests.

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use time::OffsetDateTime;

use crate::alb::fields;
use crate::bad::{Bad, BadLine, BadReason, bad};
use crate::error::ScanError;
use crate::input::{Input, Opened};
use crate::options::ScanOptions;
use crate::record::Stamp;
use crate::scan::{ScanStats, check_usable};
use crate::stamp;

/// What the load balancer said about the client certificate
/// (`tls_verify_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "code")]
pub enum VerifyStatus<'a> {
    /// `Success`: the handshake completed (in passthrough mode the
    /// certificate was not checked).
    Success,
    /// `Failed:<code>`, e.g. `ClientCertUntrusted`, `ClientCertExpired`,
    /// `ClientCertCrlHit` (the code without the `Failed:` prefix).
    Failed(&'a str),
    /// `-`: not a TLS connection.
    NotLogged,
}

/// As logged: `Success`, `Failed:<code>` or `-`.
impl std::fmt::Display for VerifyStatus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyStatus::Success => f.write_str("Success"),
            VerifyStatus::Failed(code) => write!(f, "Failed:{code}"),
            VerifyStatus::NotLogged => f.write_str("-"),
        }
    }
}

/// One connection as the load balancer logged it. Borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection<'a> {
    /// When the connection was established or refused (UTC).
    pub time: OffsetDateTime,
    /// The client address.
    pub client_ip: IpAddr,
    /// The client port.
    pub client_port: u16,
    /// The listener's port.
    pub listener_port: u16,
    /// The leaf certificate's subject (`CN=..,O=..`), when one was sent.
    pub subject: Option<&'a str>,
    /// Its notBefore, when logged.
    pub not_before: Option<OffsetDateTime>,
    /// Its notAfter, when logged.
    pub not_after: Option<OffsetDateTime>,
    /// Its serial number as logged (hex), when one was sent.
    pub serial: Option<&'a str>,
    /// The verify status.
    pub verify: VerifyStatus<'a>,
    /// The connection trace id (`TID_...`), when logged: the access log
    /// carries the same id on every request of the connection.
    pub trace_id: Option<&'a str>,
}

fn dash(s: &str) -> Option<&str> {
    (!s.is_empty() && s != "-").then_some(s)
}

fn port(s: &str, what: &str) -> Result<u16, Bad> {
    match s.parse::<u16>() {
        Ok(p) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => bad(BadReason::BadAddress, what, s),
    }
}

fn time_of(s: &str, what: &str) -> Result<OffsetDateTime, Bad> {
    let Some(t) = stamp::rfc3339(s) else {
        return bad(BadReason::BadTime, what, s);
    };
    t.to_datetime()
}

/// `NotBefore=<rfc3339>;NotAfter=<rfc3339>` (either part may be missing).
fn validity(s: &str) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>), Bad> {
    let Some(s) = dash(s) else {
        return Ok((None, None));
    };
    let (mut nb, mut na) = (None, None);
    for part in s.split(';') {
        match part.split_once('=') {
            Some(("NotBefore", v)) if nb.is_none() => nb = Some(time_of(v, "validity NotBefore")?),
            Some(("NotAfter", v)) if na.is_none() => na = Some(time_of(v, "validity NotAfter")?),
            _ => {
                return bad(
                    BadReason::MissingField,
                    "validity is not NotBefore=..;NotAfter=..",
                    s,
                );
            }
        }
    }
    Ok((nb, na))
}

fn verify_status(s: &str) -> Result<VerifyStatus<'_>, Bad> {
    match s {
        "Success" => Ok(VerifyStatus::Success),
        "-" => Ok(VerifyStatus::NotLogged),
        _ => match s.strip_prefix("Failed:") {
            Some(code) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Ok(VerifyStatus::Failed(code))
            }
            _ => bad(
                BadReason::MissingField,
                "tls_verify_status is not Success, Failed:<code> or -",
                s,
            ),
        },
    }
}

/// Serial numbers are hex digits (ALB logs them without separators).
fn serial(s: &str) -> Result<Option<&str>, Bad> {
    let Some(s) = dash(s) else { return Ok(None) };
    if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return bad(BadReason::MissingField, "serial is not hex", s);
    }
    Ok(Some(s))
}

/// Parse one connection log entry.
pub(crate) fn parse(line: &str) -> Result<Connection<'_>, Bad> {
    let (f, n) = match fields::<12>(line) {
        Ok(f) => f,
        Err((n, value)) => {
            return bad(
                BadReason::UnclosedQuote,
                &format!("field {n} opens a quote that is not closed:"),
                value,
            );
        }
    };
    if n < 11 {
        return Err(Bad::new(
            BadReason::FieldCount,
            format!("{n} fields, at least 11 expected"),
        ));
    }
    let [
        time,
        client_ip,
        client_port,
        listener_port,
        _protocol,
        _cipher,
        _latency,
        subject,
        validity_s,
        serial_s,
        verify,
        trace,
    ] = f;
    let time = time_of(time, "timestamp")?;
    let Ok(client_ip) = client_ip.parse::<IpAddr>() else {
        return bad(BadReason::BadAddress, "client_ip", client_ip);
    };
    let client_port = port(client_port, "client_port")?;
    let listener_port = port(listener_port, "listener_port")?;
    let (not_before, not_after) = validity(validity_s)?;
    Ok(Connection {
        time,
        client_ip,
        client_port,
        listener_port,
        subject: dash(subject),
        not_before,
        not_after,
        serial: serial(serial_s)?,
        verify: verify_status(verify)?,
        trace_id: dash(trace),
    })
}

/// Visit every connection of ALB connection logs, in input order (plain
/// or gzip files, directories, stdin — as [`crate::scan`] reads them).
/// `opts` gives the time window (`since`/`until`), `strict`,
/// `allow_unusable`, the bad-line examples kept and the longest line; its
/// format, space rule and evidence filters do not apply. Unusable lines
/// are counted by reason like every other format's.
pub fn for_each_connection<F>(
    inputs: Vec<Input>,
    opts: &ScanOptions,
    mut f: F,
) -> Result<ScanStats, ScanError>
where
    F: FnMut(&Connection<'_>),
{
    opts.validate()?;
    let mut stats = ScanStats::default();
    let (since, until) = (opts.since.map(Stamp::of), opts.until.map(Stamp::of));
    for input in inputs {
        stats.inputs += 1;
        let name = input.name().to_owned();
        let counter = Arc::new(AtomicU64::new(0));
        let Opened::Stream(stream) = input.open(counter, false)? else {
            continue;
        };
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let read = (&mut reader)
                .take(opts.max_line_bytes as u64 + 2)
                .read_until(b'\n', &mut buf);
            let got = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        BadReason::TruncatedGzip
                    } else {
                        BadReason::ReadError
                    };
                    line_no += 1;
                    stats.lines += 1;
                    note(
                        &mut stats,
                        opts,
                        &name,
                        line_no,
                        Bad::new(reason, format!("input ends early ({e})")),
                    )?;
                    break;
                }
            };
            stats.bytes += got as u64;
            line_no += 1;
            let complete = buf.last() == Some(&b'\n');
            if !complete && got > opts.max_line_bytes {
                // The rest of an over-long line: skip to its end.
                let mut rest = Vec::new();
                let skipped = reader.read_until(b'\n', &mut rest).unwrap_or(0);
                stats.bytes += skipped as u64;
                stats.lines += 1;
                let b = Bad::new(
                    BadReason::LineTooLong,
                    format!("over {} bytes", opts.max_line_bytes),
                );
                note(&mut stats, opts, &name, line_no, b)?;
                continue;
            }
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            stats.lines += 1;
            let parsed = std::str::from_utf8(text)
                .map_err(|e| {
                    Bad::new(
                        BadReason::InvalidUtf8,
                        format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                    )
                })
                .and_then(parse);
            match parsed {
                Ok(c) => {
                    stats.records += 1;
                    let at = Stamp::of(c.time);
                    if since.is_some_and(|s| at < s) || until.is_some_and(|u| at >= u) {
                        stats.outside_window += 1;
                        continue;
                    }
                    stats.evidence += 1;
                    f(&c);
                }
                Err(b) => note(&mut stats, opts, &name, line_no, b)?,
            }
        }
    }
    check_usable(&stats, opts)?;
    Ok(stats)
}

/// Count a bad line; under `--strict` it ends the read.
fn note(
    stats: &mut ScanStats,
    opts: &ScanOptions,
    source: &str,
    line: u64,
    b: Bad,
) -> Result<(), ScanError> {
    *stats.bad.by_reason.entry(b.reason).or_default() += 1;
    let located = BadLine {
        source: source.to_owned(),
        line,
        reason: b.reason,
        detail: b.detail,
    };
    if opts.strict {
        return Err(ScanError::Strict(located));
    }
    if stats.bad.examples.len() < opts.max_bad_examples.max(1) {
        stats.bad.examples.push(located);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The two example entries of the AWS documentation ("Connection logs
    /// for your Application Load Balancer", "Example log entries"), each
    /// on one line.
    pub(crate) const AWS_SUCCESS: &str = "2023-10-04T17:05:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 4.036 \"CN=amazondomains.com,O=endEntity,L=Seattle,ST=Washington,C=US\" NotBefore=2023-09-21T22:43:21Z;NotAfter=2026-06-17T22:43:21Z FEF257372D5C14D4 Success TID_3180a73013c8ca4bac2f731159d4b0fe";
    pub(crate) const AWS_FAILED: &str = "2023-10-04T17:05:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 - \"CN=amazondomains.com,O=endEntity,L=Seattle,ST=Washington,C=US\" NotBefore=2023-09-21T22:43:21Z;NotAfter=2026-06-17T22:43:21Z FEF257372D5C14D4 Failed:ClientCertUntrusted TID_1c71a68d70587445ad5127ff8b2687d7";

    #[test]
    fn aws_documentation_examples() {
        let ok = parse(AWS_SUCCESS).unwrap();
        assert_eq!(ok.client_ip.to_string(), "203.0.113.1");
        assert_eq!((ok.client_port, ok.listener_port), (36280, 443));
        assert_eq!(
            ok.subject,
            Some("CN=amazondomains.com,O=endEntity,L=Seattle,ST=Washington,C=US")
        );
        assert_eq!(ok.serial, Some("FEF257372D5C14D4"));
        assert_eq!(ok.verify, VerifyStatus::Success);
        assert_eq!(ok.trace_id, Some("TID_3180a73013c8ca4bac2f731159d4b0fe"));
        assert_eq!(
            ok.not_after.map(|t| t.unix_timestamp()),
            Some(1_781_736_201) // 2026-06-17T22:43:21Z
        );
        assert_eq!(
            ok.not_before.map(|t| t.unix_timestamp()),
            Some(1_695_336_201) // 2023-09-21T22:43:21Z
        );
        let failed = parse(AWS_FAILED).unwrap();
        assert_eq!(failed.verify, VerifyStatus::Failed("ClientCertUntrusted"));
        assert_eq!(failed.serial, ok.serial);
    }

    #[test]
    fn no_certificate_and_trailing_fields() {
        let line = "2026-11-02T08:00:00.000000Z 2001:db8::7 50000 443 TLSv1.3 TLS_AES_128_GCM_SHA256 0.004 \"-\" - - Success TID_1 X25519 app/x/1 10.0.0.1 -";
        let c = parse(line).unwrap();
        assert_eq!(c.client_ip.to_string(), "2001:db8::7");
        assert_eq!((c.subject, c.serial, c.not_after), (None, None, None));
        assert_eq!(c.trace_id, Some("TID_1"));
        // Eleven fields (no trace id yet) are enough.
        let eleven = "2026-11-02T08:00:00Z 198.51.100.1 1 80 - - - \"-\" - - -";
        assert_eq!(parse(eleven).unwrap().verify, VerifyStatus::NotLogged);
    }

    #[test]
    fn hostile_lines_are_named_bad_lines() {
        let cases = [
            ("", BadReason::FieldCount),
            ("2026-11-02T08:00:00Z 1.2.3.4 1 443", BadReason::FieldCount),
            (
                "yesterday 1.2.3.4 1 443 - - - \"-\" - - Success",
                BadReason::BadTime,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4:5 1 443 - - - \"-\" - - Success",
                BadReason::BadAddress,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 70000 443 - - - \"-\" - - Success",
                BadReason::BadAddress,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 +443 - - - \"-\" - - Success",
                BadReason::BadAddress,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a - - Success",
                BadReason::UnclosedQuote,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a\" NotAfter=soon AB Success",
                BadReason::BadTime,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a\" Valid=1 AB Success",
                BadReason::MissingField,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a\" - XYZ Success",
                BadReason::MissingField,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a\" - AB Failed:",
                BadReason::MissingField,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a\" - AB Failed:\u{1b}[31m",
                BadReason::MissingField,
            ),
            (
                "2026-11-02T08:00:00Z 1.2.3.4 1 443 - - - \"CN=a\" - AB OK",
                BadReason::MissingField,
            ),
        ];
        for (line, reason) in cases {
            let got = parse(line).map(|_| ()).map_err(|b| b.reason);
            assert_eq!(got, Err(reason), "{line:?}");
        }
    }

    proptest! {
        /// Any text parses or is a bad line: never a panic.
        #[test]
        fn any_text_parses_or_is_a_bad_line(line in "[ -~]{0,200}") {
            let _ = parse(&line);
        }

        /// The documented entry cut after any byte is a bad line or the
        /// same connection (a cut inside the trace id shortens only it):
        /// never another serial, subject or status.
        #[test]
        fn cut_entries_never_change_the_certificate(cut in 0usize..260) {
            let whole = parse(AWS_SUCCESS).unwrap();
            let Some(prefix) = AWS_SUCCESS.get(..cut.min(AWS_SUCCESS.len())) else { return Ok(()) };
            if let Ok(c) = parse(prefix) {
                prop_assert_eq!(c.serial, whole.serial);
                prop_assert_eq!(c.subject, whole.subject);
                prop_assert_eq!(c.verify, whole.verify);
            }
        }

        /// Entries built from arbitrary field values keep the subject and
        /// serial they were given.
        #[test]
        fn fields_round_trip(
            subject in "[A-Za-z0-9=,. -]{1,40}",
            serial in "[0-9A-F]{2,40}",
            port in 1u16..,
        ) {
            let line = format!("2026-11-02T08:00:00Z 192.0.2.1 {port} 443 TLSv1.2 X 0.001 \"{subject}\" - {serial} Failed:ClientCertExpired TID_9");
            let c = parse(&line).unwrap();
            let want = (subject.as_str() != "-").then_some(subject.as_str());
            prop_assert_eq!(c.subject, want);
            prop_assert_eq!(c.serial, Some(serial.as_str()));
            prop_assert_eq!(c.client_port, port);
            prop_assert_eq!(c.verify, VerifyStatus::Failed("ClientCertExpired"));
        }
    }
}
