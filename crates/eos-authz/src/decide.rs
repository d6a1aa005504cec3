//! One subrequest in, one answer out: who the client is (trusted-proxy
//! rule), which certificate it presented, and `eos_policy`'s decision.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};
use eos_identity::{SpaceId, UserId, parse_account_uri};
use eos_logs::TrustedProxies;
use eos_policy::{
    CertStatus, CertificateDer, Decision, Evaluator, Mode, Request, Stage, UnixTime, Verdict,
};
use serde::Serialize;

use crate::{ChainCache, ChainLookup, Peer};

/// Headers that carry the client certificate, read only from a trusted
/// proxy, and at most one of them per request:
///
/// - `X-SSL-Client-Cert`: nginx's `$ssl_client_escaped_cert`, URL-encoded
///   PEM;
/// - `X-Amzn-Mtls-Clientcert`: an ALB in passthrough mode, URL-encoded PEM
///   chain, leaf first;
/// - `X-Forwarded-Client-Cert`: Envoy (`forward_client_cert_details:
///   SANITIZE_SET`, sent to HTTP `ext_authz`), one element of `;`-separated
///   `key=value` pairs whose `Chain` (or else `Cert`) is URL-encoded PEM;
/// - `X-Forwarded-Tls-Client-Cert`: Traefik's `passTLSClientCert` with
///   `pem: true`, and Caddy's `{http.request.tls.client.certificate_der_base64}`
///   placeholder — base64 DER, URL-encoded, certificates separated by `,`.
pub const CERT_HEADERS: [&str; 4] = [
    "x-ssl-client-cert",
    "x-amzn-mtls-clientcert",
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
];

/// What Caddy's `header_up X-Forwarded-Tls-Client-Cert
/// {http.request.tls.client.certificate_der_base64}` sends when the client
/// presented no certificate: Caddy leaves a placeholder it has no value
/// for as it is. Read as "no certificate" (a client cannot send it: the
/// generated Caddyfile removes the client's header before `forward_auth`).
const CADDY_NO_CERTIFICATE: &str = "{http.request.tls.client.certificate_der_base64}";

/// The client address header a trusted proxy sets (nginx:
/// `proxy_set_header X-Forwarded-For $remote_addr`).
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The original URI of the request the proxy asks about (nginx:
/// `proxy_set_header X-Original-URI $request_uri`), for path routing.
const ORIGINAL_URI: &str = "x-original-uri";

/// Which gate let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// The address is in the space's set.
    Ip,
    /// A valid certificate bound to the space.
    Cert,
    /// Both (mode `both`).
    Both,
    /// The space is open.
    Open,
    /// The space's gates are not rolled out (stage `off`/`staged`).
    Staged,
    /// Stage `count`: admitted although the gates would refuse.
    Count,
    /// Refused.
    None,
}

impl Gate {
    /// Lower-case name (the `X-Eos-Gate` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Ip => "ip",
            Gate::Cert => "cert",
            Gate::Both => "both",
            Gate::Open => "open",
            Gate::Staged => "staged",
            Gate::Count => "count",
            Gate::None => "none",
        }
    }
}

/// The answer to one subrequest and what the decision log records.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// 200, 401 or 403.
    #[serde(serialize_with = "status_code")]
    pub status: StatusCode,
    /// The client address decided on.
    pub client: Option<IpAddr>,
    /// Who sent the subrequest.
    pub peer: Peer,
    /// Whether the peer is a trusted proxy (its headers were read).
    pub trusted_peer: bool,
    /// Address or certificate headers sent by an untrusted peer, ignored.
    pub ignored_headers: Vec<&'static str>,
    /// The space.
    pub space: Option<SpaceId>,
    /// The certificate's user, when it is valid for the space.
    pub user: Option<UserId>,
    /// The gate that admitted it.
    pub gate: Gate,
    /// `eos_policy`'s decision (`None`: the client address could not be
    /// known).
    pub decision: Option<Decision>,
    /// How the certificate chain was checked (`None`: not checked).
    pub chain: Option<ChainLookup>,
}

fn status_code<S: serde::Serializer>(s: &StatusCode, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_u16(s.as_u16())
}

impl Answer {
    /// Stage `count` admitted a request the gates would refuse.
    pub fn would_refuse(&self) -> bool {
        self.status == StatusCode::OK && self.gate == Gate::Count
    }
}

/// Decide one subrequest from `peer` with `headers`; verified chains are
/// taken from and kept in `chains`, which belongs to `evaluator`'s trust
/// configuration (a [`Snapshot`](crate::Snapshot) holds both).
pub fn decide(
    evaluator: &Evaluator<'_>,
    chains: &ChainCache,
    trusted: &TrustedProxies,
    peer: IpAddr,
    headers: &HeaderMap,
    now: UnixTime,
) -> Answer {
    decide_from(evaluator, chains, trusted, Peer::Ip(peer), headers, now)
}

/// [`decide`] for a subrequest from `peer`, which may be a process on the
/// Unix socket ([`Peer::Local`]): trusted like a configured proxy, with
/// the client address taken from the `X-Forwarded-For` it sends — a
/// subrequest without one is refused, there being no address to fall
/// back on.
pub fn decide_from(
    evaluator: &Evaluator<'_>,
    chains: &ChainCache,
    trusted: &TrustedProxies,
    peer: Peer,
    headers: &HeaderMap,
    now: UnixTime,
) -> Answer {
    let peer = match peer {
        Peer::Ip(ip) => Peer::Ip(ip.to_canonical()),
        Peer::Local => Peer::Local,
    };
    let trusted_peer = match peer {
        Peer::Ip(ip) => trusted.contains(ip),
        Peer::Local => true,
    };
    let mut ignored_headers = Vec::new();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (client, chain) = match peer {
        Peer::Ip(ip) if !trusted_peer => {
            for name in std::iter::once(FORWARDED_FOR).chain(CERT_HEADERS) {
                if headers.contains_key(name) {
                    ignored_headers.push(name);
                }
            }
            (Some(ip), None)
        }
        _ => {
            let xff: Vec<&str> = headers
                .get_all(FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let xff = (!xff.is_empty()).then(|| xff.join(","));
            let client = match peer {
                Peer::Ip(ip) => trusted.client_address(ip, xff.as_deref()),
                // The right-most entry is the address the local proxy saw;
                // from there the same rule as for a TCP peer.
                Peer::Local => xff.as_deref().and_then(|x| {
                    let (rest, last) = x.rsplit_once(',').unwrap_or(("", x));
                    let seen: IpAddr = last.trim().parse().ok()?;
                    trusted.client_address(seen, Some(rest))
                }),
            };
            (client, presented_chain(headers))
        }
    };
    let refused = |status, space, decision| Answer {
        status,
        client,
        peer,
        trusted_peer,
        ignored_headers: ignored_headers.clone(),
        space,
        user: None,
        gate: Gate::None,
        decision,
        chain: None,
    };
    let Some(ip) = client else {
        // A trusted proxy forwarded something that is not an address.
        return refused(StatusCode::FORBIDDEN, None, None);
    };
    let mut req_headers = BTreeMap::new();
    if trusted_peer {
        for (name, value) in headers {
            let name = name.as_str();
            if CERT_HEADERS.contains(&name) {
                continue;
            }
            if let Ok(v) = value.to_str() {
                req_headers.insert(name.to_owned(), v.to_owned());
            }
        }
    }
    let path = text(ORIGINAL_URI)
        .filter(|_| trusted_peer)
        .map_or("/", |u| u.split('?').next().unwrap_or("/"))
        .to_owned();
    let req = Request {
        host: text("host").map(str::to_owned),
        path,
        headers: req_headers,
        ip,
    };
    let mut lookup = None;
    let d = evaluator.evaluate_with(&req, chain.as_deref(), |trust, chain, space| {
        let (status, how) = chains.verify(trust, chain, space, now);
        lookup = Some(how);
        status
    });
    let user = match &d.cert {
        CertStatus::Valid { uri } => parse_account_uri(uri).ok().map(|(_, u)| u),
        _ => None,
    };
    if d.now.verdict == Verdict::Block {
        let status = if d.now.rule == "mtls-verify" && d.cert == CertStatus::Absent {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        return Answer {
            chain: lookup,
            ..refused(status, d.space.clone(), Some(d))
        };
    }
    let gate = admitting_gate(&d);
    Answer {
        status: StatusCode::OK,
        client,
        peer,
        trusted_peer,
        ignored_headers,
        space: d.space.clone(),
        user: if gate == Gate::Ip { None } else { user },
        gate,
        decision: Some(d),
        chain: lookup,
    }
}

/// The gate that admitted an allowed request.
fn admitting_gate(d: &Decision) -> Gate {
    let (Some(mode), Some(stage)) = (d.mode, d.stage) else {
        return Gate::Open;
    };
    if stage < Stage::Count {
        return Gate::Staged;
    }
    if !d.now.counted.is_empty() {
        return Gate::Count;
    }
    let ip = d.ip_in_set == Some(true);
    let cert = d.cert.is_valid();
    match mode {
        Mode::Open => Gate::Open,
        Mode::Ip => Gate::Ip,
        Mode::Cert => Gate::Cert,
        Mode::Both => Gate::Both,
        Mode::Either if cert => Gate::Cert,
        Mode::Either if ip => Gate::Ip,
        // Allowed at `enforce` only with one of them; at `count` the
        // `either` rule would have been counted.
        Mode::Either => Gate::Count,
    }
}

/// The chain in the certificate headers: `None` when none is presented
/// (nginx sends an empty value without a certificate). More than one
/// header, or one that is not in its proxy's format, is presented as an
/// unparsable certificate, which `eos_policy` refuses.
fn presented_chain(headers: &HeaderMap) -> Option<Vec<CertificateDer<'static>>> {
    let mut values = CERT_HEADERS
        .iter()
        .flat_map(|name| headers.get_all(*name).iter().map(move |v| (*name, v)))
        .filter(|(name, v)| {
            !(v.as_bytes().iter().all(u8::is_ascii_whitespace)
                || (*name == "x-forwarded-tls-client-cert"
                    && v.as_bytes() == CADDY_NO_CERTIFICATE.as_bytes()))
        });
    let (name, value) = values.next()?;
    let unparsable = Some(vec![CertificateDer::from(Vec::new())]);
    if values.next().is_some() {
        return unparsable;
    }
    let chain = match name {
        "x-forwarded-client-cert" => envoy_chain(value.as_bytes()),
        "x-forwarded-tls-client-cert" => base64_chain(value.as_bytes()),
        _ => eos_policy::chain_from_header(value.as_bytes()),
    };
    match chain {
        Some(chain) if !chain.is_empty() => Some(chain),
        _ => unparsable,
    }
}

/// URL-encoded base64 DER, certificates separated by `,` (Traefik,
/// Caddy).
fn base64_chain(value: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    use base64::Engine as _;
    let text = percent_encoding::percent_decode(value).decode_utf8().ok()?;
    text.split(',')
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .filter(|der| !der.is_empty())
                .map(CertificateDer::from)
        })
        .collect()
}

/// Envoy's `x-forwarded-client-cert`: exactly one element (a proxy that
/// appends to what the client sent, `APPEND_FORWARD`, would hand us a
/// forged element beside its own: refused), `Chain` or else `Cert`.
fn envoy_chain(value: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut elements = split_unquoted(text, ',');
    let element = elements.next()?;
    if elements.next().is_some() {
        return None;
    }
    let mut cert = None;
    let mut chain = None;
    for pair in split_unquoted(element, ';') {
        let (key, v) = pair.split_once('=')?;
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => q.strip_suffix('"')?.replace("\\\"", "\""),
            None => v.to_owned(),
        };
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "cert" => &mut cert,
            "chain" => &mut chain,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            // The same key twice: which one would the proxy have meant?
            return None;
        }
    }
    eos_policy::chain_from_header(chain.or(cert)?.as_bytes())
}

/// `text` split at `sep` where it is not inside double quotes (a `\"`
/// inside quotes does not end them).
fn split_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    /// A self-signed certificate (any DER will do: the chain is only split
    /// out of the header here, `eos_policy` verifies it).
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";

    fn escaped(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn is_unparsable(c: Option<Vec<CertificateDer<'static>>>) -> bool {
        c.is_some_and(|c| c.len() == 1 && c[0].is_empty())
    }

    #[test]
    fn nginx_sends_an_empty_value_without_a_certificate() {
        assert_eq!(presented_chain(&headers(&[])), None);
        assert_eq!(
            presented_chain(&headers(&[("x-ssl-client-cert", "")])),
            None
        );
    }

    #[test]
    fn either_header_carries_a_url_encoded_pem_chain() {
        let one = presented_chain(&headers(&[("x-ssl-client-cert", &escaped(PEM))])).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].as_ref(), &[0x30, 0x03, 0x02, 0x01, 0x00]);
        // The ALB keeps `+=/` unescaped: they are not spaces.
        let chain = format!("{PEM}{PEM}");
        let alb_style = escaped(&chain)
            .replace("%2B", "+")
            .replace("%3D", "=")
            .replace("%2F", "/");
        assert!(alb_style.contains('='));
        let alb = presented_chain(&headers(&[("x-amzn-mtls-clientcert", &alb_style)]));
        assert_eq!(alb.unwrap().len(), 2);
    }

    /// The PEM body on one line: Traefik's format.
    fn traefik(pems: &[&str]) -> String {
        let certs: Vec<String> = pems
            .iter()
            .map(|p| p.lines().filter(|l| !l.starts_with("-----")).collect())
            .collect();
        escaped(&certs.join(","))
    }

    #[test]
    fn envoy_xfcc_carries_chain_or_cert() {
        let e = escaped(PEM);
        let xfcc = |v: &str| presented_chain(&headers(&[("x-forwarded-client-cert", v)]));
        let one = xfcc(&format!(
            "By=spiffe://eos/authz;Hash=ab12;Cert=\"{e}\";Subject=\"O=acme,CN=alice\";URI=urn:x"
        ));
        assert_eq!(one.unwrap().len(), 1);
        // Chain wins over Cert; unquoted values are fine.
        let two = xfcc(&format!("Hash=ab;Cert={e};Chain=\"{e}{e}\""));
        assert_eq!(two.unwrap().len(), 2);
        // A quoted subject with `,` and `;` and an escaped quote is one value.
        let tricky = xfcc(&format!("Subject=\"O=a\\\",b;c\";Cert=\"{e}\""));
        assert_eq!(tricky.unwrap().len(), 1);
        for hostile in [
            // Two elements: the client's forged one and the proxy's.
            format!("Cert=\"{e}\",Cert=\"{e}\""),
            // No certificate at all, or the key twice.
            "Hash=ab12;Subject=\"CN=x\"".to_owned(),
            format!("Cert=\"{e}\";Cert=\"{e}\""),
            // Unclosed quote, no `=`, not PEM.
            format!("Cert=\"{e}"),
            "Cert".to_owned(),
            "Cert=MAMCAQA=".to_owned(),
        ] {
            assert!(is_unparsable(xfcc(&hostile)), "{hostile}");
        }
    }

    #[test]
    fn traefik_and_caddy_send_base64_der() {
        let h = |v: &str| presented_chain(&headers(&[("x-forwarded-tls-client-cert", v)]));
        let one = h(&traefik(&[PEM])).unwrap();
        assert_eq!(one[0].as_ref(), &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(h(&traefik(&[PEM, PEM])).unwrap().len(), 2);
        // Caddy's placeholder: plain base64, not URL-encoded; without a
        // certificate, the placeholder itself.
        assert_eq!(h("MAMCAQA=").unwrap().len(), 1);
        assert_eq!(h(CADDY_NO_CERTIFICATE), None);
        assert!(is_unparsable(presented_chain(&headers(&[(
            "x-ssl-client-cert",
            CADDY_NO_CERTIFICATE
        )]))));
        for hostile in ["MAMCAQA=,", "not base64!", "%FF", "MAMC AQA="] {
            assert!(is_unparsable(h(hostile)), "{hostile}");
        }
    }

    proptest::proptest! {
        /// Whatever a trusted proxy forwards, reading it never panics, and
        /// anything that is not absent is a chain or unparsable.
        #[test]
        fn certificate_headers_never_panic(
            i in 0usize..4,
            value in "[ -~]{0,200}",
        ) {
            let name = CERT_HEADERS[i];
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
                let _ = presented_chain(&h);
            }
        }
    }

    #[test]
    fn two_certificate_headers_or_garbage_are_an_unparsable_certificate() {
        let e = escaped(PEM);
        assert!(is_unparsable(presented_chain(&headers(&[
            ("x-ssl-client-cert", &e),
            ("x-amzn-mtls-clientcert", &e),
        ]))));
        assert!(is_unparsable(presented_chain(&headers(&[
            ("x-forwarded-tls-client-cert", "MAMCAQA="),
            ("x-forwarded-client-cert", &format!("Cert=\"{e}\"")),
        ]))));
        assert!(is_unparsable(presented_chain(&headers(&[
            ("x-ssl-client-cert", &e),
            ("x-ssl-client-cert", &e),
        ]))));
        assert!(is_unparsable(presented_chain(&headers(&[(
            "x-ssl-client-cert",
            "not-a-certificate"
        )]))));
        assert!(is_unparsable(presented_chain(&headers(&[(
            "x-ssl-client-cert",
            "%FF%FE"
        )]))));
    }
}
