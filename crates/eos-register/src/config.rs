//! The `[serve]` section of the config file, and the checked options it
//! becomes. Durations are written `500ms`-free: `10s`, `5m`, `1h`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use eos_ca::Profile;
use eos_logs::TrustedProxies;
use serde::Deserialize;

use crate::RegisterError;
use crate::renewal::RenewalPolicy;

/// `[serve]`: the registration service. Every field has a documented
/// default; unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on; `--listen` overrides [default: 127.0.0.1:8443].
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); `--tls-cert` overrides. Without a
    /// certificate and key the service speaks plain HTTP (behind a load
    /// balancer that terminates TLS).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, PKCS#8/SEC1/PKCS#1, mode 0600 or stricter).
    pub tls_key: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs), by the same rule
    /// as log extraction [default: `[logs] trusted_proxies`, else none: the
    /// peer is the client].
    pub trusted_proxies: Option<TrustedProxies>,
    /// Requests per minute per client address (IPv6: per /64) [default: 30].
    pub per_source_per_minute: u32,
    /// Burst per client address [default: 10].
    pub per_source_burst: u32,
    /// Requests per minute per client address for the page and its files
    /// (anything but `/v1/*` and `/metrics`), a budget of its own so that
    /// reloading the page never uses up the API's [default: 300].
    pub page_per_source_per_minute: u32,
    /// Burst per client address for the page and its files [default: 60].
    pub page_per_source_burst: u32,
    /// Requests per second over all clients [default: 200].
    pub global_per_second: u32,
    /// Global burst [default: 400].
    pub global_burst: u32,
    /// Largest request body in bytes [default: 16384].
    pub max_body_bytes: usize,
    /// Time allowed for a client to send its request body once the headers
    /// are in [default: 10s]. The registration itself is not cut short: a
    /// code that may be spent is answered.
    pub request_timeout: String,
    /// Time allowed for a client to send its request headers [default: 5s].
    pub header_timeout: String,
    /// How long shutdown waits for requests in flight [default: 10s].
    pub shutdown_grace: String,
    /// Time allowed for a TLS handshake [default: 10s].
    pub handshake_timeout: String,
    /// A connection with nothing in flight is closed after this long since
    /// its last response [default: 30s] (HTTP/2; an HTTP/1 connection
    /// waiting for its next request gets `header_timeout`). A new
    /// connection must have sent its first request within `header_timeout`,
    /// whatever its protocol.
    pub idle_timeout: String,
    /// Open connections in all [default: 512, half the usual soft
    /// open-file limit of 1024]; more are closed as soon as they are
    /// accepted. Keep it below the process's open-file limit (`ulimit -n`)
    /// less about 64 for the state store and logs.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) [default: 64];
    /// trusted proxies count only in `max_connections`.
    pub max_connections_per_source: usize,
    /// Profile of certificates issued through `/v1/cert` [default: browser].
    pub cert_profile: Profile,
    /// `/v1/renew` renews a certificate only in this last fraction of its
    /// lifetime [default: 0.3333, the last third], so a renew agent that
    /// renews at about two thirds is in time and a copied certificate
    /// cannot renew at will.
    pub renewal_window: f64,
    /// Label prefix of rules written by `/v1/ip` and `/v1/recover`
    /// [default: "registered"].
    pub rule_label: String,
    /// Notification on admin recovery: a command run with the event as JSON
    /// on standard input (program and arguments, no shell).
    pub recovery_notify_command: Option<Vec<String>>,
    /// Notification on admin recovery: a URL the event is POSTed to as JSON.
    pub recovery_notify_webhook: Option<String>,
    /// Run the sync watcher (docs/SYNC.md) beside the service, so rules it
    /// registers reach the IPSets in seconds, and serve its figures on
    /// `/metrics` [default: false].
    pub sync: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: None,
            per_source_per_minute: 30,
            per_source_burst: 10,
            page_per_source_per_minute: 300,
            page_per_source_burst: 60,
            global_per_second: 200,
            global_burst: 400,
            max_body_bytes: 16 * 1024,
            request_timeout: "10s".to_owned(),
            header_timeout: "5s".to_owned(),
            shutdown_grace: "10s".to_owned(),
            handshake_timeout: "10s".to_owned(),
            idle_timeout: "30s".to_owned(),
            max_connections: 512,
            max_connections_per_source: 64,
            cert_profile: Profile::Browser,
            renewal_window: RenewalPolicy::default().window(),
            rule_label: "registered".to_owned(),
            recovery_notify_command: None,
            recovery_notify_webhook: None,
            sync: false,
        }
    }
}

/// Where recovery events go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyHook {
    /// Nowhere (a warning is logged at start).
    None,
    /// Run this program with these arguments, the event on stdin.
    Command(Vec<String>),
    /// POST the event to this URL.
    Webhook(String),
}

/// Rate limits, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per client address, per minute.
    pub per_source_per_minute: NonZeroU32,
    /// Per client address burst.
    pub per_source_burst: NonZeroU32,
    /// Per client address, per minute, for the page and its files.
    pub page_per_source_per_minute: NonZeroU32,
    /// Per client address burst for the page and its files.
    pub page_per_source_burst: NonZeroU32,
    /// All clients, per second.
    pub global_per_second: NonZeroU32,
    /// All clients burst.
    pub global_burst: NonZeroU32,
}

/// How long and how many connections are held, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// For a TLS handshake.
    pub handshake_timeout: Duration,
    /// Idle since the last response.
    pub idle_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections per client address (trusted proxies excepted).
    pub max_connections_per_source: usize,
}

/// The checked options of the service (from [`ServeConfig::options`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Trusted proxies.
    pub trusted_proxies: TrustedProxies,
    /// Rate limits.
    pub limits: RateLimits,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Per request.
    pub request_timeout: Duration,
    /// For the request headers.
    pub header_timeout: Duration,
    /// For shutdown.
    pub shutdown_grace: Duration,
    /// Connection timeouts and caps.
    pub connections: ConnectionLimits,
    /// Profile of issued certificates.
    pub cert_profile: Profile,
    /// When a certificate may be renewed.
    pub renewal: RenewalPolicy,
    /// Rule label prefix.
    pub rule_label: String,
    /// Recovery notification.
    pub notify: NotifyHook,
}

impl Default for ServeOptions {
    fn default() -> Self {
        // The defaults parse: covered by a test.
        ServeConfig::default()
            .options()
            .unwrap_or_else(|_| unreachable_defaults())
    }
}

fn unreachable_defaults() -> ServeOptions {
    let one = NonZeroU32::MIN;
    ServeOptions {
        trusted_proxies: TrustedProxies::default(),
        limits: RateLimits {
            per_source_per_minute: one,
            per_source_burst: one,
            page_per_source_per_minute: one,
            page_per_source_burst: one,
            global_per_second: one,
            global_burst: one,
        },
        max_body_bytes: 16 * 1024,
        request_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(10),
        connections: ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_source: 64,
        },
        cert_profile: Profile::Browser,
        renewal: RenewalPolicy::default(),
        rule_label: "registered".to_owned(),
        notify: NotifyHook::None,
    }
}

fn nonzero(key: &str, n: u32) -> Result<NonZeroU32, RegisterError> {
    NonZeroU32::new(n)
        .ok_or_else(|| RegisterError::Config(format!("[serve] {key} must be at least 1")))
}

fn at_least_one(key: &str, n: usize) -> Result<usize, RegisterError> {
    if n == 0 {
        return Err(RegisterError::Config(format!(
            "[serve] {key} must be at least 1"
        )));
    }
    Ok(n)
}

fn duration(key: &str, s: &str) -> Result<Duration, RegisterError> {
    let d = eos_codes::parse_duration(s)
        .map_err(|e| RegisterError::Config(format!("[serve] {key}: {e}")))?;
    if d.is_zero() {
        return Err(RegisterError::Config(format!(
            "[serve] {key} must be at least 1s"
        )));
    }
    Ok(d)
}

impl ServeConfig {
    /// Check the section and turn it into options.
    pub fn options(&self) -> Result<ServeOptions, RegisterError> {
        if self.max_body_bytes < 256 || self.max_body_bytes > 1024 * 1024 {
            return Err(RegisterError::Config(
                "[serve] max_body_bytes must be between 256 and 1048576".to_owned(),
            ));
        }
        let notify = match (&self.recovery_notify_command, &self.recovery_notify_webhook) {
            (Some(_), Some(_)) => {
                return Err(RegisterError::Config(
                    "[serve] set recovery_notify_command or recovery_notify_webhook, not both"
                        .to_owned(),
                ));
            }
            (Some(cmd), None) if cmd.is_empty() || cmd[0].is_empty() => {
                return Err(RegisterError::Config(
                    "[serve] recovery_notify_command needs a program".to_owned(),
                ));
            }
            (Some(cmd), None) => NotifyHook::Command(cmd.clone()),
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(url).map_err(|e| {
                    RegisterError::Config(format!("[serve] recovery_notify_webhook: {e}"))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(RegisterError::Config(
                        "[serve] recovery_notify_webhook must be an http(s) URL".to_owned(),
                    ));
                }
                NotifyHook::Webhook(url.clone())
            }
            (None, None) => NotifyHook::None,
        };
        let label = eos_plan::rules::Label::new(&self.rule_label)
            .map_err(|e| RegisterError::Config(format!("[serve] rule_label: {e}")))?;
        Ok(ServeOptions {
            trusted_proxies: self.trusted_proxies.clone().unwrap_or_default(),
            limits: RateLimits {
                per_source_per_minute: nonzero(
                    "per_source_per_minute",
                    self.per_source_per_minute,
                )?,
                per_source_burst: nonzero("per_source_burst", self.per_source_burst)?,
                page_per_source_per_minute: nonzero(
                    "page_per_source_per_minute",
                    self.page_per_source_per_minute,
                )?,
                page_per_source_burst: nonzero(
                    "page_per_source_burst",
                    self.page_per_source_burst,
                )?,
                global_per_second: nonzero("global_per_second", self.global_per_second)?,
                global_burst: nonzero("global_burst", self.global_burst)?,
            },
            max_body_bytes: self.max_body_bytes,
            request_timeout: duration("request_timeout", &self.request_timeout)?,
            header_timeout: duration("header_timeout", &self.header_timeout)?,
            shutdown_grace: duration("shutdown_grace", &self.shutdown_grace)?,
            connections: ConnectionLimits {
                handshake_timeout: duration("handshake_timeout", &self.handshake_timeout)?,
                idle_timeout: duration("idle_timeout", &self.idle_timeout)?,
                max_connections: at_least_one("max_connections", self.max_connections)?,
                max_connections_per_source: at_least_one(
                    "max_connections_per_source",
                    self.max_connections_per_source,
                )?,
            },
            cert_profile: self.cert_profile,
            renewal: RenewalPolicy::new(self.renewal_window)
                .map_err(|e| RegisterError::Config(format!("[serve] renewal_window: {e}")))?,
            rule_label: label.as_str().to_owned(),
            notify,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let o = ServeConfig::default().options().unwrap();
        assert_eq!(o.max_body_bytes, 16 * 1024);
        assert_eq!(o.request_timeout, Duration::from_secs(10));
        assert_eq!(o.notify, NotifyHook::None);
        assert_eq!(o.limits.per_source_burst.get(), 10);
        assert_eq!(o.connections, unreachable_defaults().connections);
    }

    #[test]
    fn rejects_bad_settings() {
        let c = ServeConfig {
            per_source_burst: 0,
            ..ServeConfig::default()
        };
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .contains("per_source_burst")
        );
        let c = ServeConfig {
            recovery_notify_command: Some(vec!["x".into()]),
            recovery_notify_webhook: Some("http://127.0.0.1:1/".into()),
            ..ServeConfig::default()
        };
        assert!(c.options().unwrap_err().to_string().contains("not both"));
        let c = ServeConfig {
            recovery_notify_webhook: Some("file:///etc/passwd".into()),
            ..ServeConfig::default()
        };
        assert!(c.options().is_err());
        let c = ServeConfig {
            max_connections_per_source: 0,
            ..ServeConfig::default()
        };
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .contains("max_connections_per_source")
        );
        let c = ServeConfig {
            request_timeout: "0s".into(),
            ..ServeConfig::default()
        };
        assert!(c.options().is_err());
    }
}
