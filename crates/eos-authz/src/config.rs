//! The `[authz]` section of the config file: how the decision service
//! listens, whom it believes and how often it reloads. Every field has a
//! documented default; unknown keys are refused, and a bad value is refused
//! while the file is read, so the error names its `file:line:column`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use eos_logs::TrustedProxies;
use serde::Deserialize;

use crate::{Listen, ServeOptions};

/// `[authz]`: the decision service (`eos-sec authz serve`); its flags
/// override each field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzConfig {
    /// Address to listen on (plain HTTP, for the proxy only): `host:port`,
    /// or `unix:` and an absolute path for a proxy on the same host
    /// [default: 127.0.0.1:9180]; also the address `authz config` wires the
    /// proxy to.
    pub listen: Listen,
    /// Proxies whose `X-Forwarded-For` and certificate headers are believed
    /// [default: `[logs] trusted_proxies`].
    pub trusted_proxies: Option<TrustedProxies>,
    /// How often the policy, trust bundle, CRLs and sets are checked; a
    /// revocation is enforced within it [default: 1s].
    #[serde(deserialize_with = "eos_codes::duration::deserialize_positive")]
    pub reload_interval: Duration,
    /// Most connections served at once [default: 1024].
    pub max_connections: NonZeroUsize,
    /// Most verified certificate chains kept between reloads (a reload
    /// empties the cache; 0 turns it off) [default: 10000].
    pub chain_cache: usize,
    /// For a request's headers, and for the next request on an idle
    /// kept-alive connection [default: 5s].
    #[serde(deserialize_with = "eos_codes::duration::deserialize_positive")]
    pub header_timeout: Duration,
    /// To answer a request once its headers are in [default: 5s].
    #[serde(deserialize_with = "eos_codes::duration::deserialize_positive")]
    pub request_timeout: Duration,
    /// How long shutdown waits for requests in flight [default: 5s].
    #[serde(deserialize_with = "eos_codes::duration::deserialize_positive")]
    pub shutdown_grace: Duration,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        let o = ServeOptions::default();
        AuthzConfig {
            listen: Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 9180))),
            trusted_proxies: None,
            reload_interval: Duration::from_secs(1),
            max_connections: NonZeroUsize::new(o.max_connections).unwrap_or(NonZeroUsize::MIN),
            chain_cache: 10_000,
            header_timeout: o.header_timeout,
            request_timeout: o.request_timeout,
            shutdown_grace: o.shutdown_grace,
        }
    }
}

impl AuthzConfig {
    /// The service's options, with `trusted_proxies` when the section names
    /// none.
    pub fn options(&self, trusted_proxies: &TrustedProxies) -> ServeOptions {
        ServeOptions {
            trusted_proxies: self
                .trusted_proxies
                .clone()
                .unwrap_or_else(|| trusted_proxies.clone()),
            max_connections: self.max_connections.get(),
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        #[serde(default)]
        authz: AuthzConfig,
    }

    fn parse(text: &str) -> Result<AuthzConfig, String> {
        toml::from_str::<File>(text).map(|f| f.authz).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            format!("{line:?}: {}", e.message())
        })
    }

    #[test]
    fn every_field_has_a_default_and_can_be_set() {
        assert_eq!(parse("").unwrap(), AuthzConfig::default());
        let c = parse(
            "[authz]\nlisten = \"10.0.0.5:9000\"\ntrusted_proxies = [\"10.0.0.0/24\"]\n\
             reload_interval = \"250ms\"\nmax_connections = 64\nheader_timeout = \"2s\"\n\
             request_timeout = \"3s\"\nshutdown_grace = \"1m\"\nchain_cache = 0\n",
        )
        .unwrap();
        assert_eq!(c.chain_cache, 0);
        assert_eq!(c.listen, "10.0.0.5:9000".parse().unwrap());
        assert_eq!(c.reload_interval, Duration::from_millis(250));
        let o = c.options(&TrustedProxies::default());
        assert!(o.trusted_proxies.contains("10.0.0.7".parse().unwrap()));
        assert_eq!(
            (
                o.max_connections,
                o.header_timeout,
                o.request_timeout,
                o.shutdown_grace
            ),
            (
                64,
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(60)
            )
        );
        // Without its own list, the section takes the one it is given.
        let logs = TrustedProxies::parse(&["192.0.2.1".to_owned()]).unwrap();
        let o = AuthzConfig::default().options(&logs);
        assert!(o.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        for (text, line, what) in [
            ("[authz]\n\nreload_interval = \"0s\"\n", 3, "more than zero"),
            (
                "[authz]\nheader_timeout = \"5 fortnights\"\n",
                2,
                "fortnights",
            ),
            ("[authz]\nmax_connections = 0\n", 2, "nonzero"),
            (
                "[authz]\nlisten = \"localhost\"\n",
                2,
                "expected an address and port",
            ),
            (
                "[authz]\nlisten = \"unix:authz.sock\"\n",
                2,
                "absolute path",
            ),
            (
                "[authz]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                2,
                "10.0.0.0/33",
            ),
            ("[authz]\nreload = \"1s\"\n", 2, "unknown field `reload`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.starts_with(&format!("Some({line}): ")) && e.contains(what),
                "{text:?}: {e}"
            );
        }
    }
}
