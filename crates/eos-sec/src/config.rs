//! The config file (TOML). One file serves the CLI and `eos-sec serve`; each
//! library section deserialises into that library's own options type.
//!
//! Looked up from `--config FILE`, then `EOS_SEC_CONFIG`, then the first of
//! `./eos-sec.toml`, `$XDG_CONFIG_HOME/eos-sec/eos-sec.toml` (default
//! `~/.config`) and `/etc/eos-sec/eos-sec.toml` that exists; without one,
//! every section has its documented defaults. A relative path inside a
//! config file is relative to that file, not to the working directory.
//! Unknown keys are refused so a typo cannot silently leave a guard at its
//! default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::bad_input;

/// The whole config file. Sections are added by the issues that need them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[state]`
    #[serde(default)]
    pub state: StateSection,
    /// `[store]`: the state store's engine (SQLite in the state directory
    /// unless a PostgreSQL URL is given).
    #[serde(default)]
    pub store: StoreSection,
    /// `[backend]`: where IPSets live.
    #[serde(default)]
    pub backend: BackendSection,
    /// `[plan]`: evidence thresholds and guards (see docs/RULES.md).
    #[serde(default)]
    pub plan: eos_plan::PlanOptions,
    /// `[codes]`
    #[serde(default)]
    pub codes: CodesSection,
    /// `[ca]`
    #[serde(default)]
    pub ca: CaSection,
    /// `[policy]`
    #[serde(default)]
    pub policy: PolicySection,
    /// `[logs]`: trusted proxies, usage-log field names, space rule,
    /// evidence filters (docs/LOG-FORMATS.md).
    #[serde(default)]
    pub logs: eos_logs::LogsConfig,
    /// `[serve]`: the registration service (`eos-sec serve`).
    #[serde(default)]
    pub serve: eos_register::ServeConfig,
    /// `[gate]`: where the certificate gate's trust material goes
    /// (docs/MTLS.md, "The certificate gate at the edge").
    #[serde(default)]
    pub gate: GateSection,
    /// `[authz]`: the decision service (`eos-sec authz serve`; docs/MTLS.md).
    #[serde(default)]
    pub authz: eos_authz::AuthzConfig,
    /// `[sync]`: the sync workers (docs/SYNC.md).
    #[serde(default)]
    pub sync: SyncSection,
}

/// `[sync]`: how sync workers share the spaces (docs/SYNC.md, "Several
/// workers").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// How long a worker's claim on a space holds after its last renewal:
    /// when a worker dies, another takes its spaces over within this plus a
    /// poll [default: 15s].
    #[serde(deserialize_with = "eos_codes::duration::deserialize_positive")]
    pub lease: std::time::Duration,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            lease: eos_sync::DEFAULT_LEASE,
        }
    }
}

/// `[gate]`: the S3 bucket for the CA's trust bundle and CRL, and the ALB
/// trust stores and API Gateway domains that use them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    /// S3 bucket the bundle and CRL are published to (required by `gate`).
    pub bucket: Option<String>,
    /// Key prefix inside the bucket [default: `eos-sec/`].
    pub prefix: Option<String>,
    /// ALB trust stores eos-sec owns: created when missing, their bundle
    /// and revocation files replaced.
    #[serde(default)]
    pub trust_stores: Vec<String>,
    /// API Gateway (v2, HTTP API) custom domains whose truststore eos-sec
    /// points at the bundle; eos-sec never creates a domain.
    #[serde(default)]
    pub domains: Vec<GateDomain>,
    /// ALB listeners `enforce` and `rollback` move with their spaces
    /// (MutualAuthentication off/passthrough/verify).
    #[serde(default)]
    pub listeners: Vec<GateListener>,
    /// The operator's own client certificate (PEM, leaf first): `enforce`
    /// refuses to move a listener to verify when this would be refused.
    pub operator_cert: Option<PathBuf>,
}

/// `[[gate.listeners]]`: one ALB listener and the spaces behind it — a
/// listener group of `policy compile --json` (`listeners`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateListener {
    /// The listener's ARN (`arn:aws:elasticloadbalancing:…:listener/…`).
    pub arn: toml::Spanned<String>,
    /// The spaces it serves; a space is on at most one listener.
    pub spaces: Vec<toml::Spanned<String>>,
    /// The `[gate] trust_stores` entry verify uses [default: the only one].
    pub trust_store: Option<toml::Spanned<String>>,
    /// `AdvertiseTrustStoreCaNames` in mode verify [default: false].
    #[serde(default)]
    pub advertise_ca_names: bool,
    /// `IgnoreClientCertificateExpiry`; `true` is refused by enforce
    /// (`enforce-ignore-expiry`) [default: false].
    #[serde(default)]
    pub ignore_client_certificate_expiry: bool,
}

impl GateSection {
    /// `[[gate.listeners]]` as the enforce step takes them (checked when
    /// the file was read).
    pub fn listener_configs(&self) -> anyhow::Result<Vec<eos_policy::edge::ListenerConfig>> {
        self.listeners
            .iter()
            .map(|l| {
                let spaces = l
                    .spaces
                    .iter()
                    .map(|s| {
                        eos_identity::SpaceId::new(s.get_ref()).map_err(|e| {
                            bad_input!("[[gate.listeners]] space `{}`: {e}", s.get_ref())
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let trust_store = match &l.trust_store {
                    Some(t) => t.get_ref().clone(),
                    None => self.trust_stores.first().cloned().unwrap_or_default(),
                };
                Ok(eos_policy::edge::ListenerConfig {
                    arn: l.arn.get_ref().clone(),
                    spaces,
                    trust_store,
                    advertise_ca_names: l.advertise_ca_names,
                    ignore_client_certificate_expiry: l.ignore_client_certificate_expiry,
                })
            })
            .collect()
    }

    /// Check `[[gate.listeners]]` against each other and `[gate]
    /// trust_stores`; errors name `file:line:column`.
    fn check(&self, text: &str, path: &Path) -> anyhow::Result<()> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, col) = line_col(text, span.start);
            bad_input!(
                "{}:{line}:{col}: [[gate.listeners]] {message}",
                path.display()
            )
        };
        let mut seen: std::collections::BTreeMap<String, String> = Default::default();
        for l in &self.listeners {
            let arn = l.arn.get_ref();
            let is_listener = arn.starts_with("arn:")
                && arn.split(':').nth(2) == Some("elasticloadbalancing")
                && arn
                    .split(':')
                    .nth(5)
                    .is_some_and(|r| r.starts_with("listener/"));
            if !is_listener {
                return Err(at(
                    l.arn.span(),
                    format!(
                        "arn `{arn}` is not an ELBv2 listener ARN (arn:aws:elasticloadbalancing:<region>:<account>:listener/…)"
                    ),
                ));
            }
            if l.spaces.is_empty() {
                return Err(at(l.arn.span(), format!("{arn}: spaces is empty")));
            }
            for s in &l.spaces {
                let name = s.get_ref();
                let id = eos_identity::SpaceId::new(name)
                    .map_err(|e| at(s.span(), format!("space `{name}`: {e}")))?;
                if let Some(other) = seen.insert(id.to_string(), arn.clone()) {
                    return Err(at(
                        s.span(),
                        format!(
                            "space `{name}` is on two listeners ({other} and {arn}): a space is served by one listener"
                        ),
                    ));
                }
            }
            match &l.trust_store {
                Some(t) if !self.trust_stores.contains(t.get_ref()) => {
                    return Err(at(
                        t.span(),
                        format!(
                            "trust_store `{}` is not in [gate] trust_stores: eos-sec verifies only against trust stores it keeps current",
                            t.get_ref()
                        ),
                    ));
                }
                Some(_) => {}
                None if self.trust_stores.len() != 1 => {
                    return Err(at(
                        l.arn.span(),
                        format!(
                            "{arn}: name its trust_store ([gate] trust_stores has {} entries)",
                            self.trust_stores.len()
                        ),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// `[[gate.domains]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateDomain {
    /// The custom domain name.
    pub name: String,
    /// The spaces it serves (for the no-CRL lifetime warning).
    #[serde(default)]
    pub spaces: Vec<String>,
}

/// `[codes]`: security codes. The pepper itself never goes in this file:
/// it is named here (or given in `EOS_SEC_PEPPER`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodesSection {
    /// File holding the current pepper as hex (mode 0600). Exactly one of
    /// this and `EOS_SEC_PEPPER` must be set.
    pub pepper_file: Option<PathBuf>,
    /// Peppers retired by `code rotate-pepper` whose codes may still be live.
    pub previous_pepper_files: Vec<PathBuf>,
    /// Lifetime of onboarding codes.
    pub default_ttl: String,
    /// Lifetime of recovery codes.
    pub recovery_ttl: String,
    /// Failed checks allowed without delay, per source address.
    pub backoff_free_failures: u32,
    /// First backoff delay; doubles with each further failure.
    pub backoff_base: String,
    /// Longest backoff delay.
    pub backoff_max: String,
    /// Quiet time after which a failure count starts over.
    pub backoff_reset_after: String,
}

impl Default for CodesSection {
    fn default() -> Self {
        let b = eos_codes::BackoffPolicy::default();
        CodesSection {
            pepper_file: None,
            previous_pepper_files: Vec::new(),
            default_ttl: eos_codes::format_duration(eos_codes::DEFAULT_TTL),
            recovery_ttl: eos_codes::format_duration(eos_codes::DEFAULT_RECOVERY_TTL),
            backoff_free_failures: b.free_failures,
            backoff_base: eos_codes::format_duration(b.base),
            backoff_max: eos_codes::format_duration(b.max),
            backoff_reset_after: eos_codes::format_duration(b.reset_after),
        }
    }
}

impl CodesSection {
    /// The backoff policy these settings describe.
    pub fn backoff(&self) -> anyhow::Result<eos_codes::BackoffPolicy> {
        let d = |key: &str, v: &str| {
            eos_codes::parse_duration(v).map_err(|e| bad_input!("[codes] {key}: {e}"))
        };
        let policy = eos_codes::BackoffPolicy {
            free_failures: self.backoff_free_failures,
            base: d("backoff_base", &self.backoff_base)?,
            max: d("backoff_max", &self.backoff_max)?,
            reset_after: d("backoff_reset_after", &self.backoff_reset_after)?,
        };
        if policy.base.is_zero() || policy.max < policy.base {
            return Err(bad_input!(
                "[codes] backoff_base must be at least 1s and no more than backoff_max"
            ));
        }
        Ok(policy)
    }
}

/// `[ca]`: the entityOS CA. Durations are written `90s`, `15m`, `72h`, `30d`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// Who signs: `local` (the key in `<state-dir>/ca/`, default) or
    /// `acmpca` (AWS Private CA, reached with `[backend]` region, profile
    /// and endpoint_url over the standard AWS configuration).
    #[serde(default)]
    pub backend: CaBackendKind,
    /// The Private CA's ARN (`backend = "acmpca"`).
    pub certificate_authority_arn: Option<String>,
    /// How long to wait for Private CA to issue a certificate [default: 60s].
    pub issue_wait: Option<String>,
    /// Name of the environment variable holding the CA key passphrase. When
    /// set, the CA key is stored encrypted and the variable must be present;
    /// the passphrase itself is never read from the command line or config.
    pub key_passphrase_env: Option<String>,
    /// CRL distribution point URL put in every certificate [default: none].
    pub crl_url: Option<String>,
    /// How long a CRL is valid (nextUpdate - thisUpdate), at most 24h
    /// [default: 24h].
    pub crl_validity: Option<String>,
    /// How far a certificate's notBefore is set before its issuance, for
    /// clients whose clocks run slow; at most 1h and shorter than every
    /// profile's lifetime [default: 5m].
    pub backdate: Option<String>,
    /// Lifetime of a root made by `ca init` [default: 3650d].
    pub root_lifetime: Option<String>,
    /// Largest accepted CSR in bytes [default: 8192].
    pub max_csr_bytes: Option<usize>,
    /// Lifetimes per profile.
    #[serde(default)]
    pub profiles: CaProfiles,
}

/// A `[ca]` duration (whole seconds), its key named in the error.
fn ca_duration(s: &str, what: &str) -> anyhow::Result<std::time::Duration> {
    eos_codes::duration::parse_seconds(s).map_err(|e| bad_input!("{what}: {e}"))
}

impl CaSection {
    /// The key passphrase from `key_passphrase_env`, `None` when unset.
    pub fn passphrase(&self) -> anyhow::Result<Option<eos_ca::Passphrase>> {
        let Some(var) = &self.key_passphrase_env else {
            return Ok(None);
        };
        let value = std::env::var(var).map_err(|_| {
            bad_input!(
                "[ca] key_passphrase_env names {var}, but {var} is not set (or not UTF-8); export it before running eos-sec"
            )
        })?;
        Ok(Some(eos_ca::Passphrase::new(value)?))
    }

    /// The issuance policy: lifetimes per profile, backdate, CRL URL.
    pub fn issuance_policy(&self) -> anyhow::Result<eos_ca::IssuancePolicy> {
        let mut p = eos_ca::IssuancePolicy::default();
        let set = |slot: &mut eos_ca::Lifetime,
                   c: &Option<ProfileLifetime>,
                   name: &str|
         -> anyhow::Result<()> {
            if let Some(c) = c {
                if let Some(l) = &c.lifetime {
                    slot.default = ca_duration(l, &format!("[ca.profiles.{name}] lifetime"))?;
                }
                if let Some(m) = &c.max {
                    slot.max = ca_duration(m, &format!("[ca.profiles.{name}] max"))?;
                }
            }
            Ok(())
        };
        set(&mut p.service, &self.profiles.service, "service")?;
        set(&mut p.device, &self.profiles.device, "device")?;
        set(&mut p.cli, &self.profiles.cli, "cli")?;
        set(&mut p.browser, &self.profiles.browser, "browser")?;
        if let Some(b) = &self.backdate {
            p.backdate = ca_duration(b, "[ca] backdate")?;
        }
        p.crl_url = self.crl_url.clone();
        p.check().map_err(|e| bad_input!("[ca]: {e}"))?;
        Ok(p)
    }

    /// `crl_validity`, between 1 s and 24 h.
    pub fn crl_validity(&self) -> anyhow::Result<std::time::Duration> {
        let d = match &self.crl_validity {
            Some(s) => ca_duration(s, "[ca] crl_validity")?,
            None => eos_ca::MAX_CRL_VALIDITY,
        };
        if d > eos_ca::MAX_CRL_VALIDITY || d.is_zero() {
            return Err(bad_input!("[ca] crl_validity must be between 1s and 24h"));
        }
        Ok(d)
    }

    /// The lifetime of a root made by `ca init`.
    pub fn root_lifetime(&self) -> anyhow::Result<std::time::Duration> {
        match &self.root_lifetime {
            Some(s) => ca_duration(s, "[ca] root_lifetime"),
            None => Ok(std::time::Duration::from_secs(3650 * 86400)),
        }
    }

    /// The CSR limits (`max_csr_bytes`).
    pub fn csr_limits(&self) -> eos_ca::CsrLimits {
        eos_ca::CsrLimits {
            max_bytes: self
                .max_csr_bytes
                .unwrap_or(eos_ca::CsrLimits::default().max_bytes),
            ..eos_ca::CsrLimits::default()
        }
    }

    /// The Private CA's ARN (`backend = "acmpca"`).
    pub fn arn(&self) -> anyhow::Result<&str> {
        self.certificate_authority_arn.as_deref().ok_or_else(|| {
            bad_input!(
                "[ca] backend = \"acmpca\" needs [ca] certificate_authority_arn (the AWS Private CA's ARN)"
            )
        })
    }

    /// How long to wait for Private CA to issue (`issue_wait`).
    pub fn issue_wait(&self) -> anyhow::Result<eos_aws::acmpca::IssueWait> {
        let mut wait = eos_aws::acmpca::IssueWait::default();
        if let Some(s) = &self.issue_wait {
            wait.max = ca_duration(s, "[ca] issue_wait")?;
        }
        Ok(wait)
    }
}

/// Which CA signs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaBackendKind {
    /// The CA key in the state directory (the embedded default).
    #[default]
    Local,
    /// AWS Private CA.
    Acmpca,
}

/// `[ca.profiles.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaProfiles {
    /// `service` [default: 24h, max 7d].
    pub service: Option<ProfileLifetime>,
    /// `device` [default: 72h, max 30d].
    pub device: Option<ProfileLifetime>,
    /// `cli` [default: 72h, max 30d].
    pub cli: Option<ProfileLifetime>,
    /// `browser` [default: 30d, max 90d].
    pub browser: Option<ProfileLifetime>,
}

/// One profile's lifetime and cap.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLifetime {
    /// Default lifetime.
    pub lifetime: Option<String>,
    /// The most `--lifetime` may ask for.
    pub max: Option<String>,
}

/// `[policy]`: the restricted firewall.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The policy file (TOML, docs/POLICY.md); `--policy` overrides.
    pub file: Option<PathBuf>,
    /// The operator's own addresses: `enforce` refuses when one is outside
    /// the space's set. `--operator-ip` replaces them.
    #[serde(default)]
    pub operator_ips: Vec<String>,
    /// Logs `policy simulate` and the `enforce` guards replay when `--logs`
    /// is not given (files, directories, globs).
    #[serde(default)]
    pub logs: Vec<String>,
}

/// Which IPSet backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The state store (the embedded default; no AWS account needed).
    #[default]
    Local,
    /// AWS WAFv2.
    Aws,
}

/// WAF scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum WafScope {
    /// ALB, API Gateway, AppSync, Cognito (in the configured region).
    #[default]
    #[value(name = "REGIONAL")]
    Regional,
    /// CloudFront (always us-east-1).
    #[value(name = "CLOUDFRONT")]
    Cloudfront,
}

/// `[backend]`: where IPSets live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `local` (default) or `aws`.
    #[serde(default)]
    pub kind: BackendKind,
    /// AWS region (otherwise `AWS_REGION` / the profile's).
    pub region: Option<String>,
    /// AWS profile.
    pub profile: Option<String>,
    /// `REGIONAL` (default) or `CLOUDFRONT`.
    #[serde(default)]
    pub scope: WafScope,
    /// Endpoint override (tests against a local moto server).
    pub endpoint_url: Option<String>,
}

/// `[store]`: which engine holds the state. Without a URL (the default)
/// it is SQLite, `state.db` in the state directory. A PostgreSQL URL here
/// or in `EOS_SEC_STORE_URL` (which wins, and keeps a password out of the
/// file) selects PostgreSQL, shared by several `serve` instances
/// (docs/ARCHITECTURE.md, "State").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: Option<String>,
}

/// `[state]`: where state lives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// State directory; `--state-dir` overrides.
    pub dir: Option<PathBuf>,
}

/// The config file's name in each place it is looked for.
pub const DEFAULT_FILE: &str = "eos-sec.toml";

/// Where a config file is looked for when none is named, in order: the
/// working directory, the user's XDG config directory, `/etc/eos-sec`.
pub fn search_path(xdg_config_home: Option<PathBuf>, home: Option<PathBuf>) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(DEFAULT_FILE)];
    // XDG Base Directory: an empty or relative XDG_CONFIG_HOME is ignored.
    let user = xdg_config_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.filter(|h| h.is_absolute()).map(|h| h.join(".config")));
    if let Some(dir) = user {
        paths.push(dir.join("eos-sec").join(DEFAULT_FILE));
    }
    paths.push(Path::new("/etc/eos-sec").join(DEFAULT_FILE));
    paths
}

/// Load the config: `explicit` (from `--config` or `EOS_SEC_CONFIG`) must
/// exist; otherwise the first file of [`search_path`] that exists is read.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let found = search_path(
                std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
                std::env::var_os("HOME").map(PathBuf::from),
            )
            .into_iter()
            .find(|p| p.exists());
            match found {
                Some(p) => p,
                None => return Ok((Config::default(), None)),
            }
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad_input!("config {}: cannot read: {e}", path.display()))?;
    let mut config = parse(&text, &path)?;
    config.resolve_paths(path.parent().unwrap_or(Path::new("")));
    Ok((config, Some(path)))
}

impl Config {
    /// Make the relative paths of the file relative to `dir`, the file's
    /// own directory. A section that adds a path field adds it here.
    fn resolve_paths(&mut self, dir: &Path) {
        let at = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        let at_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                at(p);
            }
        };
        at_opt(&mut self.state.dir);
        at_opt(&mut self.codes.pepper_file);
        self.codes.previous_pepper_files.iter_mut().for_each(at);
        at_opt(&mut self.policy.file);
        for l in &mut self.policy.logs {
            if Path::new(l.as_str()).is_relative() && l != "-" {
                *l = dir.join(l.as_str()).display().to_string();
            }
        }
        at_opt(&mut self.gate.operator_cert);
        at_opt(&mut self.serve.tls_cert);
        at_opt(&mut self.serve.tls_key);
    }
}

/// Parse config text; errors carry `file:line:column`.
pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        bad_input!("{}:{line}:{col}: {}", path.display(), e.message())
    })?;
    config.gate.check(text, path)?;
    Ok(config)
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_is_cwd_then_xdg_then_etc() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            search_path(Some(p("/x")), Some(p("/home/a"))),
            [
                p("eos-sec.toml"),
                p("/x/eos-sec/eos-sec.toml"),
                p("/etc/eos-sec/eos-sec.toml")
            ]
        );
        // XDG_CONFIG_HOME unset or relative: ~/.config.
        for xdg in [None, Some(p("rel"))] {
            assert_eq!(
                search_path(xdg, Some(p("/home/a"))).get(1),
                Some(&p("/home/a/.config/eos-sec/eos-sec.toml"))
            );
        }
        assert_eq!(search_path(None, None).len(), 2);
    }

    #[test]
    fn unknown_key_is_refused_with_location() {
        let err = parse("[state]\ndri = \"x\"\n", Path::new("eos-sec.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("eos-sec.toml:2:1: unknown field `dri`"),
            "{msg}"
        );
    }

    #[test]
    fn empty_is_default() {
        let c = parse("", Path::new("x")).unwrap();
        assert!(c.state.dir.is_none());
        assert_eq!(c.codes.default_ttl, "14d");
        assert_eq!(
            c.codes.backoff().unwrap(),
            eos_codes::BackoffPolicy::default()
        );
    }

    #[test]
    fn ca_backend() {
        let c = parse("", Path::new("x")).unwrap();
        assert_eq!(c.ca.backend, CaBackendKind::Local);
        let c = parse(
            "[ca]\nbackend = \"acmpca\"\ncertificate_authority_arn = \"arn:x\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.ca.backend, CaBackendKind::Acmpca);
        assert!(parse("[ca]\nbackend = \"vault\"\n", Path::new("x")).is_err());
    }

    #[test]
    fn gate_listeners_are_checked_with_their_location() {
        let head = "[gate]\nbucket = \"b\"\ntrust_stores = [\"eos-ca\"]\n";
        let arn = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/eos/1/2";
        let c = parse(
            &format!("{head}[[gate.listeners]]\narn = \"{arn}\"\nspaces = [\"acme\"]\n"),
            Path::new("x.toml"),
        )
        .unwrap();
        let l = c.gate.listener_configs().unwrap();
        assert_eq!(
            (l[0].arn.as_str(), l[0].trust_store.as_str()),
            (arn, "eos-ca")
        );
        assert!(!l[0].advertise_ca_names && !l[0].ignore_client_certificate_expiry);
        let err = |body: &str| {
            parse(&format!("{head}{body}"), Path::new("x.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("[[gate.listeners]]\narn = \"arn:aws:s3:::b\"\nspaces = [\"acme\"]\n");
        assert!(
            e.starts_with(
                "x.toml:5:7: [[gate.listeners]] arn `arn:aws:s3:::b` is not an ELBv2 listener ARN"
            ),
            "{e}"
        );
        let e = err(&format!(
            "[[gate.listeners]]\narn = \"{arn}\"\nspaces = [\"acme\"]\n[[gate.listeners]]\narn = \"{arn}3\"\nspaces = [\"globex\", \"acme\"]\n"
        ));
        assert!(
            e.starts_with("x.toml:9:21: [[gate.listeners]] space `acme` is on two listeners"),
            "{e}"
        );
        let e = err(&format!(
            "[[gate.listeners]]\narn = \"{arn}\"\nspaces = [\"acme\"]\ntrust_store = \"other\"\n"
        ));
        assert!(
            e.starts_with(
                "x.toml:7:15: [[gate.listeners]] trust_store `other` is not in [gate] trust_stores"
            ),
            "{e}"
        );
        let e = err(&format!(
            "[[gate.listeners]]\narn = \"{arn}\"\nspaces = [\"Acme!\"]\n"
        ));
        assert!(
            e.starts_with("x.toml:6:11: [[gate.listeners]] space `Acme!`"),
            "{e}"
        );
        let e = err(&format!(
            "[[gate.listeners]]\narn = \"{arn}\"\nspace = [\"acme\"]\n"
        ));
        assert!(e.contains("unknown field `space`"), "{e}");
    }

    #[test]
    fn codes_section() {
        let c = parse(
            "[codes]\npepper_file = \"/etc/eos-sec/pepper\"\nbackoff_max = \"1h\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.codes.backoff().unwrap().max.as_secs(), 3600);
        let bad = parse("[codes]\nbackoff_base = \"0s\"\n", Path::new("x")).unwrap();
        assert!(bad.codes.backoff().is_err());
        let err = parse("[codes]\npepper = \"00\"\n", Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("unknown field `pepper`"), "{err}");
    }
}
