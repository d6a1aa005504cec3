//! The client side of the revocation drill: one HTTPS request with a client
//! certificate to a gate, answered by "admitted", "refused" or "could not
//! tell".
//!
//! Every probe is a new TCP connection and a full TLS handshake (no session
//! resumption), so a gate that checks certificates at the handshake sees the
//! certificate again each time. Every phase is bounded by the probe's
//! timeout: name resolution, connect, handshake, request and answer head.
//! The target is verified against the given CA certificates only; there is
//! no way to skip that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

/// Why a probe could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The target is not an `https://host[:port]/path` URL.
    #[error("target `{url}`: {reason}")]
    Target {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA file holds no usable certificate.
    #[error("ca file: {0}")]
    Roots(String),
    /// The drill key or its CSR could not be made.
    #[error("drill key: {0}")]
    Key(String),
    /// The client certificate is not PEM, or rustls refused the pair.
    #[error("client certificate: {0}")]
    ClientCert(String),
}

impl ProbeError {
    /// The caller's input was wrong (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ProbeError::Target { .. } | ProbeError::Roots(_))
    }
}

/// Where a probe goes: `https://host[:port]/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The host name (SNI, `Host`, certificate check) or address.
    pub host: String,
    /// The port (443 when not given).
    pub port: u16,
    /// The path and query.
    pub path: String,
}

impl Target {
    /// Parse an `https://` URL. No user info, no fragment; an IPv6 host in
    /// brackets.
    pub fn parse(url: &str) -> Result<Target, ProbeError> {
        let bad = |reason| ProbeError::Target {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("expected an https:// URL (the drill needs a TLS handshake)"))?;
        if rest.contains('#') || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("no fragment or whitespace allowed"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return Err(bad("no user info allowed"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        };
        ServerName::try_from(host.to_owned()).map_err(|_| bad("not a host name or address"))?;
        Ok(Target {
            url: url.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }
}

/// A fresh P-256 key for a drill identity. It lives in memory only and is
/// never written anywhere: a drill that dies leaves no usable key behind.
#[derive(Debug)]
pub struct DrillKey {
    key: rcgen::KeyPair,
}

impl DrillKey {
    /// Generate one.
    pub fn generate() -> Result<DrillKey, ProbeError> {
        let key = rcgen::KeyPair::generate().map_err(|e| ProbeError::Key(e.to_string()))?;
        Ok(DrillKey { key })
    }

    /// A CSR for the key (its subject is ignored: the CA takes the identity
    /// from the account it is asked to certify).
    pub fn csr_pem(&self) -> Result<String, ProbeError> {
        let params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| ProbeError::Key(e.to_string()))?;
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(|e| ProbeError::Key(e.to_string()))
    }

    /// A client presenting `cert_pem` (leaf first) with this key, trusting
    /// the certificates in `ca_pem` for the target.
    pub fn client(
        &self,
        cert_pem: &str,
        ca_pem: &[u8],
        timeout: Duration,
    ) -> Result<Prober, ProbeError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProbeError::ClientCert(e.to_string()))?;
        let key = Zeroizing::new(self.key.serialize_der());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
        Prober::new(ca_pem, Some((chain, key)), timeout)
    }
}

/// Makes probes: a TLS client configuration and the per-phase timeout.
#[derive(Debug, Clone)]
pub struct Prober {
    config: Arc<ClientConfig>,
    timeout: Duration,
}

impl Prober {
    /// A prober trusting `ca_pem` (PEM certificates) for the target, with a
    /// client certificate and key or none.
    pub fn new(
        ca_pem: &[u8],
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        timeout: Duration,
    ) -> Result<Prober, ProbeError> {
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProbeError::Roots(e.to_string()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ProbeError::Roots("no usable CA certificate".to_owned()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProbeError::ClientCert(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ProbeError::ClientCert(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        // A fresh handshake every time: the gate must see the certificate.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Prober {
            config: Arc::new(config),
            timeout,
        })
    }

    /// One GET of `target`, connecting to `connect` instead of resolving
    /// the host when given.
    pub async fn probe(&self, target: &Target, connect: Option<SocketAddr>) -> Outcome {
        match self.attempt(target, connect).await {
            Ok(status) if status == 401 || status == 403 => Outcome::Refused {
                by: Refusal::Http { status },
            },
            Ok(status) if status < 400 => Outcome::Admitted { status },
            Ok(status) => Outcome::Failed {
                phase: Phase::Answer,
                error: format!("HTTP {status}: neither admitted nor refused"),
            },
            Err((phase, error)) => match alert_in(error.as_ref()) {
                Some(alert) => Outcome::Refused {
                    by: Refusal::TlsAlert { alert },
                },
                None => Outcome::Failed {
                    phase,
                    error: error.to_string(),
                },
            },
        }
    }

    async fn attempt(
        &self,
        target: &Target,
        connect: Option<SocketAddr>,
    ) -> Result<u16, (Phase, BoxError)> {
        let t = self.timeout;
        let addr = match connect {
            Some(a) => a,
            None => bounded(
                Phase::Resolve,
                t,
                tokio::net::lookup_host((target.host.as_str(), target.port)),
            )
            .await?
            .next()
            .ok_or_else(|| (Phase::Resolve, "the name has no address".into()))?,
        };
        let tcp = bounded(Phase::Connect, t, TcpStream::connect(addr)).await?;
        let _ = tcp.set_nodelay(true);
        let name =
            ServerName::try_from(target.host.clone()).map_err(|e| (Phase::Handshake, e.into()))?;
        let connector = TlsConnector::from(self.config.clone());
        let tls = bounded(Phase::Handshake, t, connector.connect(name, tcp)).await?;
        let (mut sender, conn) = bounded(
            Phase::Request,
            t,
            hyper::client::conn::http1::handshake(TokioIo::new(tls)),
        )
        .await?;
        let driver = tokio::spawn(conn);
        let host = if target.port == 443 {
            target.host.clone()
        } else if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        let req = hyper::Request::get(target.path.as_str())
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONNECTION, "close")
            .header(hyper::header::USER_AGENT, "eos-sec-drill")
            .body(Empty::<Bytes>::new())
            .map_err(|e| (Phase::Request, e.into()))?;
        let answer = bounded(Phase::Answer, t, sender.send_request(req)).await;
        driver.abort();
        Ok(answer?.status().as_u16())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One phase of a probe, within `t`.
async fn bounded<T, E: Into<BoxError>>(
    phase: Phase,
    t: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, (Phase, BoxError)> {
    match tokio::time::timeout(t, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((phase, e.into())),
        Err(_) => Err((phase, format!("no answer within {t:?}").into())),
    }
}

/// The TLS alert the peer sent, anywhere in an error's chain (a TLS 1.3
/// server refuses a client certificate after the client's handshake is
/// done, so the alert arrives with the first read of the answer).
fn alert_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::AlertReceived(alert)) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("{alert:?}"));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = alert_in(inner)
        {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// Which phase a probe failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Resolving the host name.
    Resolve,
    /// The TCP connection.
    Connect,
    /// The TLS handshake.
    Handshake,
    /// Sending the request.
    Request,
    /// Reading the answer's head.
    Answer,
}

/// How the target refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Refusal {
    /// HTTP 401 or 403.
    Http {
        /// The status.
        status: u16,
    },
    /// A TLS alert from the server (e.g. `CertificateRevoked`,
    /// `BadCertificate`).
    TlsAlert {
        /// The alert, as rustls names it.
        alert: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Http { status } => write!(f, "HTTP {status}"),
            Refusal::TlsAlert { alert } => write!(f, "TLS alert {alert}"),
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// A 2xx or 3xx answer: the gate let the certificate through.
    Admitted {
        /// The status.
        status: u16,
    },
    /// The gate refused.
    Refused {
        /// How.
        by: Refusal,
    },
    /// Neither: unreachable, a timeout, another TLS error, or an answer
    /// other than 2xx/3xx/401/403 (e.g. 502 when the decision service is
    /// down). Never counted as a refusal.
    Failed {
        /// Where.
        phase: Phase,
        /// What happened.
        error: String,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_are_https_urls_with_a_host() {
        let t = Target::parse("https://Globex.eos.test:8443/hello?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("globex.eos.test", 8443, "/hello?x=1")
        );
        let t = Target::parse("https://[::1]?a").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 443, "/?a")
        );
        assert_eq!(Target::parse("https://h").unwrap().path, "/");
        for bad in [
            "http://h/",
            "https://",
            "https://u@h/",
            "https://h:x/",
            "https://h/#f",
            "https://h /",
            "https://[::1/",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.is_bad_input(), "{bad}: {e}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let e = Prober::new(b"not pem", None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, ProbeError::Roots(_)), "{e}");
    }
}
