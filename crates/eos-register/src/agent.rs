//! The renew agent: the client side of `/v1/renew`, for `eos-sec cert
//! renew` and any Rust service that keeps its own client certificate
//! fresh. [`renew_once`] presents the certificate in the TLS handshake,
//! sends a CSR for the same key (or a new key with `rekey`) and writes the
//! successor and key atomically; [`next_renewal`] says when to do it again
//! (about two thirds into the lifetime, with jitter, inside the service's
//! renewal window, which opens at two thirds by default).
//!
//! Every socket phase is bounded (connect, each read, the whole request),
//! and the server is verified with the given CA or the system's roots —
//! there is no way to skip verification.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use der::{Decode, DecodePem};
use eos_ca::Certificate;
use eos_ops::write_atomic;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Where the agent renews and how long it waits.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The registration service, e.g. `https://register.example` (the path
    /// `/v1/renew` is appended).
    pub url: String,
    /// The CA that signed the service's TLS certificate (PEM); `None` for
    /// the system's roots.
    pub server_ca: Option<String>,
    /// TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Each read of the answer.
    pub read_timeout: Duration,
    /// The whole request.
    pub request_timeout: Duration,
}

impl AgentOptions {
    /// `url` with the default timeouts (connect 10 s, read 30 s, request
    /// 60 s).
    pub fn new(url: String, server_ca: Option<String>) -> AgentOptions {
        AgentOptions {
            url,
            server_ca,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The certificate and key files the agent keeps fresh.
#[derive(Debug, Clone)]
pub struct Files {
    /// The certificate, PEM (replaced by its successor).
    pub cert: PathBuf,
    /// Its private key, PKCS#8 PEM (replaced when re-keying; mode 0600).
    pub key: PathBuf,
}

/// Why a renewal did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A file could not be read (bad input: the path given is wrong).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A setting is unusable (the URL, the CA file).
    #[error("{0}")]
    Config(String),
    /// The service refused, with its stable code.
    #[error("renewal refused: {code}: {message}")]
    Refused {
        /// The stable code (`renewal-too-early`, ...).
        code: String,
        /// The service's message.
        message: String,
        /// When to come back, if the service said.
        retry_after: Option<Duration>,
    },
    /// The service refused the certificate in the TLS handshake (a fatal
    /// alert): it is expired, revoked at the handshake, or not a
    /// certificate of the service's CA — retrying cannot help.
    #[error(
        "the service refused {path} in the TLS handshake ({alert}): it is not a valid certificate of the service's CA"
    )]
    CertificateRefused {
        /// The certificate file.
        path: String,
        /// The TLS alert the service sent.
        alert: String,
    },
    /// The service could not be reached or answered something else (worth
    /// retrying).
    #[error("renewal failed: {0}")]
    Transport(String),
}

impl From<eos_ops::WriteError> for AgentError {
    fn from(e: eos_ops::WriteError) -> Self {
        AgentError::Io {
            path: e.path.display().to_string(),
            source: e.source,
        }
    }
}

impl AgentError {
    /// Whether the problem is in what the caller gave (a file, a setting,
    /// a certificate that is not the CA's or no longer valid): exit code 2
    /// in the CLI.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AgentError::Unreadable { .. }
                | AgentError::BadFile { .. }
                | AgentError::Config(_)
                | AgentError::CertificateRefused { .. }
        )
    }

    /// Whether trying again later can succeed: a network failure, a 5xx,
    /// too early, rate limited. A revoked, expired, superseded or unknown
    /// certificate, or a disabled account, needs a person (a new
    /// certificate with a security code).
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Transport(_) => true,
            AgentError::Refused { code, .. } => matches!(
                code.as_str(),
                "renewal-too-early" | "rate-limited" | "throttled" | "internal" | "timeout"
            ),
            _ => false,
        }
    }
}

/// What a renewal wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Renewed {
    /// The successor's serial.
    pub serial: String,
    /// The renewed certificate's serial.
    pub renewed: String,
    /// The successor's notAfter, RFC 3339.
    pub not_after: String,
    /// Whether a new key was written.
    pub rekeyed: bool,
}

#[derive(Deserialize)]
struct Answer {
    serial: String,
    renewed: String,
    not_after: String,
    certificate: String,
}

#[derive(Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    retry_after: Option<u64>,
}

fn read(path: &Path) -> Result<Zeroizing<String>, AgentError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| AgentError::Unreadable {
            path: path.display().to_string(),
            source,
        })
}

/// The first certificate in `pem` (a file may carry the chain after the
/// leaf).
fn leaf(pem: &str, path: &Path) -> Result<Certificate, AgentError> {
    Certificate::from_pem(pem.as_bytes())
        .or_else(|_| {
            let first = rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
                .next()
                .and_then(Result::ok)
                .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
                .unwrap_or_default();
            Certificate::from_der(&first)
        })
        .map_err(|e| AgentError::BadFile {
            path: path.display().to_string(),
            reason: format!("not a PEM certificate: {e}"),
        })
}

/// The validity of the certificate in `pem` (the first CERTIFICATE block).
pub fn validity(pem: &str, path: &Path) -> Result<(SystemTime, SystemTime), AgentError> {
    let v = *leaf(pem, path)?.tbs_certificate().validity();
    Ok((v.not_before.to_system_time(), v.not_after.to_system_time()))
}

/// The certificate and key of `files`, read and checked before anything is
/// sent: each readable and parseable, the key the certificate's, the
/// certificate valid at `now` (an expired one cannot renew: a person must
/// get a new one with a security code).
pub struct Current {
    cert_pem: Zeroizing<String>,
    key_pem: Zeroizing<String>,
    key: rcgen::KeyPair,
    /// The certificate's notBefore.
    pub not_before: SystemTime,
    /// The certificate's notAfter.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Read and check `files` ([`Current`]).
pub fn check_files(files: &Files, now: SystemTime) -> Result<Current, AgentError> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let bad = |path: &Path, reason: String| AgentError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let cert = leaf(&cert_pem, &files.cert)?;
    let key = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|e| bad(&files.key, format!("not a PKCS#8 PEM private key: {e}")))?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.subject_public_key.raw_bytes() != rcgen::PublicKeyData::der_bytes(&key) {
        return Err(bad(
            &files.key,
            format!("not the key of the certificate in {}", files.cert.display()),
        ));
    }
    let v = cert.tbs_certificate().validity();
    let (not_before, not_after) = (v.not_before.to_system_time(), v.not_after.to_system_time());
    if now >= not_after {
        return Err(bad(
            &files.cert,
            format!(
                "expired at {}; an expired certificate cannot renew: get a new one with a security code",
                eos_ca::rfc3339(not_after)
            ),
        ));
    }
    Ok(Current {
        cert_pem,
        key_pem,
        key,
        not_before,
        not_after,
    })
}

/// When to renew a certificate valid from `not_before` to `not_after`:
/// 70 % into its lifetime plus up to 5 % of jitter (`jitter` in [0, 1)),
/// so a fleet issued together does not renew together, and always inside
/// the service's default window (the last third).
pub fn next_renewal(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime.mul_f64(0.70 + 0.05 * jitter.clamp(0.0, 1.0))
}

/// A fraction in [0, 1) from the OS's random source (0 if it fails: no
/// jitter is better than no renewal).
pub fn jitter() -> f64 {
    getrandom::u64().map_or(0.0, |n| (n >> 11) as f64 / (1u64 << 53) as f64)
}

fn client(
    opts: &AgentOptions,
    cert_pem: &str,
    key_pem: &str,
) -> Result<reqwest::Client, AgentError> {
    // An `http://` URL or one without a host is refused here, as bad input,
    // rather than failing every request as if the service were down.
    match reqwest::Url::parse(&opts.url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        Ok(_) => {
            return Err(AgentError::Config(format!(
                "--url {}: must be an https:// URL with a host (the certificate is presented over TLS only)",
                opts.url
            )));
        }
        Err(e) => return Err(AgentError::Config(format!("--url {}: {e}", opts.url))),
    }
    let identity = reqwest::Identity::from_pem(format!("{key_pem}\n{cert_pem}").as_bytes())
        .map_err(|e| AgentError::Config(format!("certificate and key: {e}")))?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .identity(identity)
        .https_only(true)
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .timeout(opts.request_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &opts.server_ca {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|e| AgentError::Config(format!("server CA: {e}")))?;
        if certs.is_empty() {
            return Err(AgentError::Config(
                "server CA: no CERTIFICATE block".to_owned(),
            ));
        }
        builder = builder.tls_built_in_root_certs(false);
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| AgentError::Config(format!("http client: {e}")))
}

/// A CSR (PEM) for `key`.
fn csr(key: &rcgen::KeyPair) -> Result<String, AgentError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| AgentError::Config(format!("csr: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "eos-sec renew");
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| AgentError::Config(format!("csr: {e}")))
}

/// Renew the certificate in `files` once: present it, send a CSR for its
/// key (a new P-256 key with `rekey`), and write what comes back — the key
/// first (when new), then the certificate, each atomically (a temporary
/// file in the same directory, fsync, rename, fsync of the directory). The
/// key is written 0600; the certificate keeps 0644.
pub async fn renew_once(
    opts: &AgentOptions,
    files: &Files,
    rekey: bool,
) -> Result<Renewed, AgentError> {
    let Current {
        cert_pem,
        key_pem,
        key,
        ..
    } = check_files(files, SystemTime::now())?;
    let new_key = if rekey {
        Some(rcgen::KeyPair::generate().map_err(|e| AgentError::Config(format!("new key: {e}")))?)
    } else {
        None
    };
    let csr = csr(new_key.as_ref().unwrap_or(&key))?;
    let client = client(opts, &cert_pem, &key_pem)?;
    let url = format!("{}/v1/renew", opts.url.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .json(&serde_json::json!({ "csr": csr }))
        .send()
        .await
        .map_err(|e| transport(&e, &files.cert))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| transport(&e, &files.cert))?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<Refusal>(&body) {
            Ok(r) => AgentError::Refused {
                code: r.error,
                message: r.message,
                retry_after: r.retry_after.map(Duration::from_secs),
            },
            Err(_) => AgentError::Transport(format!("{url} answered {status}")),
        });
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| AgentError::Transport(format!("{url}: unexpected answer: {e}")))?;
    // What came back is a certificate, before anything is replaced.
    validity(&answer.certificate, &files.cert)?;
    if let Some(k) = &new_key {
        write_atomic(&files.key, k.serialize_pem().as_bytes(), 0o600)?;
    }
    write_atomic(&files.cert, answer.certificate.as_bytes(), 0o644)?;
    Ok(Renewed {
        serial: answer.serial,
        renewed: answer.renewed,
        not_after: answer.not_after,
        rekeyed: rekey,
    })
}

/// A transport error, or the service's refusal of the certificate in the
/// handshake: a fatal TLS alert about the certificate (rustls' error sits
/// inside an `io::Error`, whose `source` skips it, so each one is opened).
fn transport(e: &reqwest::Error, cert: &Path) -> AgentError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            use rustls::AlertDescription as A;
            if matches!(
                alert,
                A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied
                    // rustls' answer to a certificate whose signature does
                    // not verify: another CA of the same name.
                    | A::DecryptError
            ) {
                return AgentError::CertificateRefused {
                    path: cert.display().to_string(),
                    alert: format!("{alert:?}"),
                };
            }
        }
        source = err.source();
    }
    AgentError::Transport(describe(e))
}

/// A transport error with its causes (reqwest's own message stops at the
/// outermost).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A command run after each renewal (`eos-sec cert renew --exec`), to
/// reload the service that presents the certificate: `sh -c COMMAND`, with
/// `EOS_SEC_CERT`, `EOS_SEC_KEY`, `EOS_SEC_SERIAL` (the new certificate),
/// `EOS_SEC_RENEWED` (the one it replaced) and `EOS_SEC_NOT_AFTER` in its
/// environment, standard input closed, standard output discarded (the
/// agent's own output stays parseable), standard error inherited. It is
/// killed when it has not exited within `timeout`.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The shell command.
    pub command: String,
    /// How long it may run.
    pub timeout: Duration,
}

impl Hook {
    /// Run the hook for `renewed`, which replaced `files`. An error says
    /// why it failed (it did not start, exited non-zero, timed out).
    pub async fn run(&self, files: &Files, renewed: &Renewed) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .env("EOS_SEC_CERT", &files.cert)
            .env("EOS_SEC_KEY", &files.key)
            .env("EOS_SEC_SERIAL", &renewed.serial)
            .env("EOS_SEC_RENEWED", &renewed.renewed)
            .env("EOS_SEC_NOT_AFTER", &renewed.not_after)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        crate::notify::run_bounded(cmd, "--exec hook", None, self.timeout).await
    }
}

/// How long to wait after the `attempt`-th failure in a row (from 0):
/// 5 s doubling to at most `cap`, with up to 25 % jitter, or what the
/// service asked for when it said.
pub fn backoff(attempt: u32, cap: Duration, asked: Option<Duration>) -> Duration {
    if let Some(d) = asked {
        return d.min(cap.max(Duration::from_secs(1)));
    }
    let base = Duration::from_secs(5).saturating_mul(1u32 << attempt.min(16));
    base.min(cap).mul_f64(0.75 + 0.25 * jitter())
}

/// Keep `files` fresh until `stop` resolves: renew at about two thirds of
/// each certificate's lifetime ([`next_renewal`]), retry a failure with
/// [`backoff`] (capped at a tenth of what is left of the certificate, at
/// most 5 minutes), and after each renewal run `hook` (a failed hook is
/// logged, not retried: the certificate is renewed, and the next renewal
/// runs it again) and call `on_renewed`. Returns an error that retrying cannot fix (the certificate
/// expired, was revoked or superseded, its account disabled, a file is
/// unusable): then a person must get a new certificate with a code.
pub async fn run_daemon(
    opts: &AgentOptions,
    files: &Files,
    rekey: bool,
    hook: Option<&Hook>,
    mut on_renewed: impl FnMut(&Renewed),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(stop);
    loop {
        let Current {
            not_before,
            not_after,
            ..
        } = check_files(files, SystemTime::now())?;
        let due = next_renewal(not_before, not_after, jitter());
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tracing::info!(renew_at = %eos_ca::rfc3339(due), "next renewal");
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        let mut attempt = 0u32;
        loop {
            let now = SystemTime::now();
            if now >= not_after {
                return Err(AgentError::Refused {
                    code: "renewal-expired".to_owned(),
                    message: format!(
                        "{} expired at {} before it could be renewed; get a new one with a security code",
                        files.cert.display(),
                        eos_ca::rfc3339(not_after)
                    ),
                    retry_after: None,
                });
            }
            match renew_once(opts, files, rekey).await {
                Ok(r) => {
                    tracing::info!(serial = %r.serial, renewed = %r.renewed, not_after = %r.not_after, "certificate renewed");
                    if let Some(h) = hook {
                        match h.run(files, &r).await {
                            Ok(()) => tracing::info!(serial = %r.serial, "--exec hook ran"),
                            Err(e) => {
                                tracing::error!(serial = %r.serial, error = %e, "--exec hook failed")
                            }
                        }
                    }
                    on_renewed(&r);
                    break;
                }
                Err(e) if e.is_retryable() => {
                    let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
                    let cap = (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
                    let asked = match &e {
                        AgentError::Refused { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let wait = backoff(attempt, cap, asked);
                    tracing::warn!(error = %e, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "renewal failed; retrying");
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = &mut stop => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_between_70_and_75_percent_inside_the_window() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let na = nb + Duration::from_secs(86400);
        let early = next_renewal(nb, na, 0.0);
        let late = next_renewal(nb, na, 0.999);
        assert_eq!(early, nb + Duration::from_secs(60480));
        assert!(late < nb + Duration::from_secs(64800));
        let opens = crate::renewal::RenewalPolicy::default().opens_at(nb, na);
        assert!(early > opens);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_honours_the_service() {
        let cap = Duration::from_secs(300);
        assert!(backoff(0, cap, None) <= Duration::from_secs(5));
        assert!(backoff(0, cap, None) >= Duration::from_millis(3750));
        assert!(backoff(3, cap, None) <= Duration::from_secs(40));
        assert!(backoff(20, cap, None) <= cap);
        assert_eq!(
            backoff(0, cap, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
    }
}
