//! `eos-sec ca ...`: the entityOS CA from the command line.
//!
//! `[ca] backend` picks who signs. `local` (the default): files live in
//! `<state-dir>/ca/`: `ca.key` (PKCS#8, mode 0600, encrypted when
//! `[ca] key_passphrase_env` is set), `ca.pem`, `crl.pem`. `acmpca`: AWS
//! Private CA `[ca] certificate_authority_arn` signs and revokes and
//! publishes its own CRL. Either way the inventory lives in the state
//! database and every certificate goes through the one issuance flow
//! (`eos_ops::issuance`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_ca::{
    Account, CaEnv, CsrLimits, LocalCa, Passphrase, Profile, RevocationReason, RevokedEntry, Serial,
};
use eos_identity::{SpaceId, UserId};
use eos_store::certs::{self, CertFilter, CertRecord, CrlRecord};
use eos_store::{AuditEntry, audit_in};
use serde::Serialize;

use eos_aws::acmpca::{IssueWait, PrivateCa};
use eos_ops::issuance::{CaSetup, IssuanceError, IssueAudit, IssueInput, issue_in, withdraw};

use crate::cmd::aws::{AwsArgs, aws_options};
use crate::config::{CaBackendKind, CaSection};
use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// Run the entityOS CA (local key or AWS Private CA, `[ca] backend`).
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA: a fresh P-256 key and a self-signed root named for
    /// the environment. Refuses if a CA already exists in the state dir.
    Init(InitArgs),
    /// Import an existing CA key (PKCS#8 PEM, P-256) and certificate.
    Import(ImportArgs),
    /// Validate a CSR and sign a client certificate for an account. The
    /// identity comes from --space/--user, never from the CSR. A refused CSR
    /// exits 2 with its code and writes nothing.
    Sign(SignArgs),
    /// List issued certificates.
    List(ListArgs),
    /// Show one certificate.
    Show(ShowArgs),
    /// Revoke a certificate and regenerate the CRL.
    Revoke(RevokeArgs),
    /// Issue a fresh CRL (next CRL number) to <state-dir>/ca/crl.pem (local
    /// CA; AWS Private CA publishes its own).
    Crl(OutArgs),
    /// Print the trust bundle (the CA chain) for an ALB trust store or an
    /// API Gateway truststore.
    Bundle(OutArgs),
    /// Active certificates that expire within a duration, and whether each
    /// was renewed (its successor's serial)
    Expiring(ExpiringArgs),
    /// Disable an account: nothing is issued to it any more, by a security
    /// code or by renewal, until `ca enable` (audited). Its certificates
    /// stay valid until they expire; `ca revoke` cuts them off at once
    Disable(DisableArgs),
    /// Enable a disabled account again (audited)
    Enable(AccountArgs),
}

/// The account `ca disable` and `ca enable` act on.
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// The account's space
    #[arg(long)]
    pub space: SpaceId,
    /// The account's user
    #[arg(long)]
    pub user: UserId,
}

/// Arguments of `ca disable`.
#[derive(Debug, Args)]
pub struct DisableArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// Why (kept in the audit log and the account's record)
    #[arg(long)]
    pub reason: String,
}

/// Arguments of `ca init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Environment: dev, staging or prod. Each has its own key and root
    /// name; certificates of one never verify under another's bundle.
    #[arg(long)]
    pub env: CaEnv,
}

/// Arguments of `ca import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CA key, PKCS#8 PEM (encrypted if `[ca] key_passphrase_env` is set)
    #[arg(long)]
    pub key: PathBuf,
    /// The CA certificate, PEM; for an intermediate CA followed by its
    /// issuers up to the root (the trust bundle carries them all)
    #[arg(long)]
    pub cert: PathBuf,
}

/// Arguments of `ca sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The CSR, PEM or DER
    #[arg(long)]
    pub csr: PathBuf,
    /// The account's space
    #[arg(long)]
    pub space: SpaceId,
    /// The account's user
    #[arg(long)]
    pub user: UserId,
    /// Profile: service (24h), device (72h), cli (72h) or browser (30d)
    #[arg(long)]
    pub profile: Profile,
    /// Lifetime within the profile's cap, e.g. 12h [default: the profile's]
    #[arg(long)]
    pub lifetime: Option<String>,
    /// Write the certificate PEM here (mode 0644) [default: standard output]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `ca list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this space
    #[arg(long)]
    pub space: Option<SpaceId>,
    /// Only this user
    #[arg(long)]
    pub user: Option<UserId>,
    /// Only active or only revoked certificates
    #[arg(long, value_parser = ["active", "revoked"])]
    pub status: Option<String>,
}

/// Arguments of `ca show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The serial (hex, as `ca list` prints it)
    pub serial: String,
    /// Print the certificate PEM instead of the summary
    #[arg(long)]
    pub pem: bool,
}

/// Arguments of `ca revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The serial (hex)
    pub serial: String,
    /// unspecified, key-compromise, affiliation-changed, superseded or
    /// cessation-of-operation
    #[arg(long, default_value = "unspecified")]
    pub reason: RevocationReason,
}

/// An optional output file.
#[derive(Debug, Args)]
pub struct OutArgs {
    /// Also write the PEM here [default: standard output only]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `ca expiring`.
#[derive(Debug, Args)]
pub struct ExpiringArgs {
    /// Window, e.g. 72h or 7d
    #[arg(long, default_value = "72h")]
    pub within: String,
}

pub fn run(cmd: CaCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let files = CaFiles::new(&ctx.state_dir);
    let conf = &ctx.config.ca;
    if conf.backend == CaBackendKind::Acmpca {
        let arn = private_arn(conf)?;
        match &cmd {
            CaCommand::Init(_) | CaCommand::Import(_) => {
                return Err(bad_input!(
                    "[ca] backend = \"acmpca\": the CA lives in AWS Private CA ({arn}) and its key never leaves AWS; `ca init` and `ca import` make a local CA (set [ca] backend = \"local\" for one)"
                ));
            }
            CaCommand::Crl(_) => {
                return Err(bad_input!(
                    "[ca] backend = \"acmpca\": AWS Private CA publishes its own CRL to the S3 bucket of its CrlConfiguration (see `aws acm-pca describe-certificate-authority --certificate-authority-arn {arn}`); eos-sec signs CRLs only for a local CA"
                ));
            }
            _ => {}
        }
    }
    match cmd {
        CaCommand::Init(a) => init(a, ctx, &files, conf),
        CaCommand::Import(a) => import(a, ctx, &files, conf),
        CaCommand::Sign(a) => sign(a, ctx, &files, conf),
        CaCommand::List(a) => list(a, ctx),
        CaCommand::Show(a) => show(a, ctx),
        CaCommand::Revoke(a) => revoke(a, ctx),
        CaCommand::Crl(a) => crl(a, ctx, &files, conf),
        CaCommand::Bundle(a) => bundle(a, ctx),
        CaCommand::Expiring(a) => expiring(a, ctx),
        CaCommand::Disable(a) => disable(a, ctx),
        CaCommand::Enable(a) => enable(a, ctx),
    }
}

struct CaFiles {
    dir: PathBuf,
    key: PathBuf,
    cert: PathBuf,
    crl: PathBuf,
}

impl CaFiles {
    fn new(state_dir: &Path) -> CaFiles {
        let dir = state_dir.join("ca");
        CaFiles {
            key: dir.join("ca.key"),
            cert: dir.join("ca.pem"),
            crl: dir.join("crl.pem"),
            dir,
        }
    }
}

fn duration(s: &str, what: &str) -> anyhow::Result<Duration> {
    eos_codes::duration::parse_seconds(s).map_err(|e| bad_input!("{what}: {e}"))
}

fn passphrase(conf: &CaSection) -> anyhow::Result<Option<Passphrase>> {
    let Some(var) = &conf.key_passphrase_env else {
        return Ok(None);
    };
    let value = std::env::var(var).map_err(|_| {
        bad_input!(
            "[ca] key_passphrase_env names {var}, but {var} is not set (or not UTF-8); export it before running eos-sec"
        )
    })?;
    Ok(Some(Passphrase::new(value)?))
}

pub(crate) fn policy(conf: &CaSection) -> anyhow::Result<eos_ca::IssuancePolicy> {
    let mut p = eos_ca::IssuancePolicy::default();
    let set = |slot: &mut eos_ca::Lifetime,
               c: &Option<crate::config::ProfileLifetime>,
               name: &str|
     -> anyhow::Result<()> {
        if let Some(c) = c {
            if let Some(l) = &c.lifetime {
                slot.default = duration(l, &format!("[ca.profiles.{name}] lifetime"))?;
            }
            if let Some(m) = &c.max {
                slot.max = duration(m, &format!("[ca.profiles.{name}] max"))?;
            }
        }
        Ok(())
    };
    set(&mut p.service, &conf.profiles.service, "service")?;
    set(&mut p.device, &conf.profiles.device, "device")?;
    set(&mut p.cli, &conf.profiles.cli, "cli")?;
    set(&mut p.browser, &conf.profiles.browser, "browser")?;
    if let Some(b) = &conf.backdate {
        p.backdate = duration(b, "[ca] backdate")?;
    }
    p.crl_url = conf.crl_url.clone();
    p.check().map_err(|e| bad_input!("[ca]: {e}"))?;
    Ok(p)
}

fn crl_validity(conf: &CaSection) -> anyhow::Result<Duration> {
    let d = match &conf.crl_validity {
        Some(s) => duration(s, "[ca] crl_validity")?,
        None => eos_ca::MAX_CRL_VALIDITY,
    };
    if d > eos_ca::MAX_CRL_VALIDITY || d.is_zero() {
        return Err(bad_input!("[ca] crl_validity must be between 1s and 24h"));
    }
    Ok(d)
}

fn load_ca(files: &CaFiles, conf: &CaSection) -> anyhow::Result<LocalCa> {
    if !files.key.exists() {
        return Err(bad_input!(
            "no CA in {}: run `eos-sec ca init --env dev|staging|prod` or `eos-sec ca import` first",
            files.dir.display()
        ));
    }
    let key = zeroize::Zeroizing::new(
        std::fs::read_to_string(&files.key)
            .with_context(|| format!("reading {}", files.key.display()))?,
    );
    let cert = std::fs::read_to_string(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?;
    let pass = passphrase(conf)?;
    Ok(LocalCa::from_pem(&key, &cert, pass.as_ref())?)
}

/// The configured CA ready to issue, for `eos-sec serve`: `None` when the
/// backend is local and no CA was made or imported in the state directory.
/// `rt` is the runtime the service runs on (the AWS client's connections
/// belong to it).
pub(crate) fn load_setup(
    ctx: &crate::Ctx,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<CaSetup>> {
    let files = CaFiles::new(&ctx.state_dir);
    let conf = &ctx.config.ca;
    if conf.backend == CaBackendKind::Local && !files.key.exists() {
        return Ok(None);
    }
    let ca = open_ca(ctx, &files, rt)?;
    Ok(Some(setup(ca, conf)?))
}

/// The configured CA ready to issue (local key or AWS Private CA), for
/// commands that issue outside `ca sign` (`drill`).
pub(crate) fn issuing_setup(
    ctx: &crate::Ctx,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<CaSetup> {
    let files = CaFiles::new(&ctx.state_dir);
    setup(open_ca(ctx, &files, rt)?, &ctx.config.ca)
}

/// The CA that signs, as configured.
enum Ca {
    Local(Box<LocalCa>),
    Private(Box<PrivateCa>),
}

fn private_arn(conf: &CaSection) -> anyhow::Result<&str> {
    conf.certificate_authority_arn.as_deref().ok_or_else(|| {
        bad_input!(
            "[ca] backend = \"acmpca\" needs [ca] certificate_authority_arn (the AWS Private CA's ARN)"
        )
    })
}

fn issue_wait(conf: &CaSection) -> anyhow::Result<IssueWait> {
    let mut wait = IssueWait::default();
    if let Some(s) = &conf.issue_wait {
        wait.max = duration(s, "[ca] issue_wait")?;
    }
    Ok(wait)
}

/// Connect to AWS Private CA `[ca] certificate_authority_arn`, reached as
/// every AWS command reaches AWS: `[backend]` region, profile and
/// endpoint_url over the standard AWS configuration (`ca sign` has its own
/// `--profile`, so the CA commands take no AWS flags).
fn open_private(ctx: &crate::Ctx, rt: &tokio::runtime::Runtime) -> anyhow::Result<PrivateCa> {
    rt.block_on(connect_private(ctx))
}

/// [`open_private`] for a caller already inside the async runtime (the
/// certificate gate reads the Private CA's CRL there).
pub(crate) async fn connect_private(ctx: &crate::Ctx) -> anyhow::Result<PrivateCa> {
    let conf = &ctx.config.ca;
    let arn = private_arn(conf)?;
    let opts = aws_options(&AwsArgs::default(), &ctx.config.backend);
    PrivateCa::connect(&opts, arn, issue_wait(conf)?)
        .await
        .with_context(|| format!("[ca] certificate_authority_arn {arn}"))
}

/// The configured CA: the local key or AWS Private CA.
fn open_ca(ctx: &crate::Ctx, files: &CaFiles, rt: &tokio::runtime::Runtime) -> anyhow::Result<Ca> {
    match ctx.config.ca.backend {
        CaBackendKind::Local => Ok(Ca::Local(Box::new(load_ca(files, &ctx.config.ca)?))),
        CaBackendKind::Acmpca => Ok(Ca::Private(Box::new(open_private(ctx, rt)?))),
    }
}

/// A CA with its issuance policy and CSR limits. AWS Private CA writes its
/// own CRL distribution point into what it issues, so the plan carries that
/// URL (`[ca] crl_url`, when set, is taken as what the CA writes).
fn setup(ca: Ca, conf: &CaSection) -> anyhow::Result<CaSetup> {
    let mut policy = policy(conf)?;
    let limits = csr_limits(conf);
    match ca {
        Ca::Local(ca) => Ok(CaSetup::local(*ca, policy, limits)?),
        Ca::Private(ca) => {
            if policy.crl_url.is_none() {
                policy.crl_url = ca.crl_url().map(str::to_owned);
            }
            let info = ca.info().clone();
            let id = ca.arn().to_owned();
            let chain = ca.trust_bundle();
            Ok(CaSetup::new(*ca, info, id, chain, policy, limits))
        }
    }
}

fn csr_limits(conf: &CaSection) -> CsrLimits {
    CsrLimits {
        max_bytes: conf.max_csr_bytes.unwrap_or(CsrLimits::default().max_bytes),
        ..CsrLimits::default()
    }
}

/// Write a file atomically (temp file in the same directory, then rename)
/// with `mode`; nothing is left half-written.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    set_mode(tmp.as_file(), mode)?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(f: &std::fs::File, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_f: &std::fs::File, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

fn create_ca_dir(files: &CaFiles) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&files.dir)
            .with_context(|| format!("creating {}", files.dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(&files.dir)?;
    Ok(())
}

fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())
}

#[derive(Serialize)]
struct CaReport {
    subject: String,
    key_fingerprint: String,
    not_after: String,
    key_encrypted: bool,
    key: String,
    certificate: String,
    crl: String,
    crl_number: u64,
}

/// Store a new CA: key, certificate, audit entry and a first CRL.
fn install(
    ca: &LocalCa,
    action: &str,
    ctx: &crate::Ctx,
    files: &CaFiles,
    conf: &CaSection,
) -> anyhow::Result<()> {
    if files.key.exists() || files.cert.exists() {
        return Err(bad_input!(
            "a CA already exists in {}; refusing to replace it",
            files.dir.display()
        ));
    }
    let pass = passphrase(conf)?;
    let validity = crl_validity(conf)?;
    create_ca_dir(files)?;
    let key_pem = ca.key_pem(pass.as_ref())?;
    let cert_pem = ca.certificate_pem()?;
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let (number, crl_pem) = issue_crl(ca, &tx, validity)?;
    let info = ca.info();
    let subject = info.subject().to_string();
    audit_in(
        &tx,
        &AuditEntry::new(&actor(), action, &subject).with_detail(serde_json::json!({
            "key_fingerprint": info.fingerprint().to_string(),
            "not_after": eos_ca::rfc3339(info.not_after()),
        })),
    )?;
    write_atomic(&files.key, key_pem.as_bytes(), 0o600)?;
    write_atomic(&files.cert, cert_pem.as_bytes(), 0o644)?;
    write_atomic(&files.crl, crl_pem.as_bytes(), 0o644)?;
    tx.commit()?;
    let report = CaReport {
        subject,
        key_fingerprint: info.fingerprint().to_string(),
        not_after: eos_ca::rfc3339(info.not_after()),
        key_encrypted: pass.is_some(),
        key: files.key.display().to_string(),
        certificate: files.cert.display().to_string(),
        crl: files.crl.display().to_string(),
        crl_number: number,
    };
    if ctx.json {
        return emit_json(&report);
    }
    emit(&format!(
        "CA ready: {}\n  key fingerprint  {}\n  valid until      {}\n  key              {} (0600{})\n  certificate      {}\n  crl              {} (number {})\n",
        report.subject,
        report.key_fingerprint,
        report.not_after,
        report.key,
        if report.key_encrypted {
            ", encrypted"
        } else {
            ""
        },
        report.certificate,
        report.crl,
        report.crl_number
    ))
}

fn init(a: InitArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    if files.key.exists() {
        return Err(bad_input!(
            "a CA already exists in {}; refusing to replace it",
            files.dir.display()
        ));
    }
    let lifetime = match &conf.root_lifetime {
        Some(s) => duration(s, "[ca] root_lifetime")?,
        None => Duration::from_secs(3650 * 86400),
    };
    let ca = LocalCa::generate(a.env, lifetime, SystemTime::now())?;
    install(&ca, "ca.init", ctx, files, conf)
}

fn import(
    a: ImportArgs,
    ctx: &crate::Ctx,
    files: &CaFiles,
    conf: &CaSection,
) -> anyhow::Result<()> {
    let key = zeroize::Zeroizing::new(
        std::fs::read_to_string(&a.key)
            .map_err(|e| bad_input!("{}: cannot read: {e}", a.key.display()))?,
    );
    let cert = std::fs::read_to_string(&a.cert)
        .map_err(|e| bad_input!("{}: cannot read: {e}", a.cert.display()))?;
    let pass = passphrase(conf)?;
    let ca = LocalCa::from_pem(&key, &cert, pass.as_ref()).map_err(|e| {
        bad_input!(
            "importing {} and {}: {e}",
            a.key.display(),
            a.cert.display()
        )
    })?;
    install(&ca, "ca.import", ctx, files, conf)
}

/// Build and record the next CRL inside `tx`; returns its number and PEM.
fn issue_crl(
    ca: &LocalCa,
    tx: &eos_store::Tx<'_>,
    validity: Duration,
) -> anyhow::Result<(u64, String)> {
    let now = SystemTime::now();
    let revoked = certs::revoked_unexpired(tx, &eos_ca::rfc3339(now))?;
    let mut entries = Vec::with_capacity(revoked.len());
    // Only the local CA's own certificates: AWS Private CA lists its own.
    for r in revoked.iter().filter(|r| r.signer == certs::LOCAL_SIGNER) {
        entries.push(revoked_entry(r)?);
    }
    let number = certs::next_crl_number(tx)?;
    let crl = ca.crl(number, &entries, now, validity)?;
    let pem = eos_ca::crl_pem(&crl)?;
    let this_update = crl.tbs_cert_list.this_update.to_system_time();
    certs::record_crl(
        tx,
        &CrlRecord {
            number,
            this_update: eos_ca::rfc3339(this_update),
            next_update: eos_ca::rfc3339(now + validity),
            pem: pem.clone(),
        },
    )?;
    Ok((number, pem))
}

fn revoked_entry(r: &CertRecord) -> anyhow::Result<RevokedEntry> {
    let corrupt =
        |what: &str| anyhow::anyhow!("state database: certificate {}: bad {what}", r.serial);
    let at = r
        .revoked_at
        .as_deref()
        .ok_or_else(|| corrupt("revoked_at"))?;
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| corrupt("revoked_at"))?;
    Ok(RevokedEntry {
        serial: Serial::from_hex(&r.serial).map_err(|_| corrupt("serial"))?,
        revoked_at: at.into(),
        reason: r
            .revocation_reason
            .as_deref()
            .unwrap_or("unspecified")
            .parse()
            .map_err(|_| corrupt("revocation_reason"))?,
    })
}

#[derive(Serialize)]
struct Refusal<'a> {
    status: &'static str,
    code: &'a str,
    reason: String,
}

#[derive(Serialize)]
struct SignReport<'a> {
    status: &'static str,
    #[serde(flatten)]
    record: &'a CertRecord,
    ignored_requests: &'a [eos_ca::IgnoredRequest],
    out: Option<String>,
    pem: Option<&'a str>,
}

/// A refused request: an audit entry (the code, the account asked for and
/// the file name; never the CSR body), JSON on stdout with `--json`, and an
/// error whose message starts with the file, what was refused and the
/// stable code (`csr refused [csr-weak-hash]`, `lifetime refused
/// [lifetime-over-cap]`). The caller holds no open transaction.
fn refuse(ctx: &crate::Ctx, a: &SignArgs, err: eos_ca::IssueError) -> anyhow::Error {
    let path = &a.csr;
    let what = match err {
        eos_ca::IssueError::Csr(_) => "csr",
        eos_ca::IssueError::LifetimeOverCap { .. } | eos_ca::IssueError::LifetimeZero { .. } => {
            "lifetime"
        }
        _ => "request",
    };
    let context = format!("{}: {what} refused [{}]", path.display(), err.code());
    if let Err(e) = audit_refusal(ctx, a, "ca.csr-refused", err.code(), None) {
        return e.context(format!(
            "{context}; recording the refusal in the audit log failed"
        ));
    }
    if ctx.json {
        let _ = emit_json(&Refusal {
            status: "refused",
            code: err.code(),
            reason: err.to_string(),
        });
    }
    anyhow::Error::new(err).context(context)
}

/// Audit a refused or failed `ca sign`; `error` is the failure's message
/// when it says more than its code (the serial of a certificate the CA
/// signed and what became of it).
fn audit_refusal(
    ctx: &crate::Ctx,
    a: &SignArgs,
    action: &str,
    code: &str,
    error: Option<String>,
) -> anyhow::Result<()> {
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let mut detail = serde_json::json!({
        "space": a.space,
        "user": a.user,
        "profile": a.profile,
        "csr": a.csr.display().to_string(),
    });
    if let Some(error) = error {
        detail["error"] = serde_json::json!(error);
    }
    audit_in(
        &tx,
        &AuditEntry::new(&actor(), action, code).with_detail(detail),
    )?;
    tx.commit()?;
    Ok(())
}

fn sign(a: SignArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let limits = csr_limits(conf);
    let lifetime = a
        .lifetime
        .as_deref()
        .map(|s| duration(s, "--lifetime"))
        .transpose()?;
    // Read at most one byte over the cap: a huge file is refused without
    // being read whole, with its size when the file system knows it.
    let (input, size) = read_capped(&a.csr, limits.max_bytes)?;
    if input.len() > limits.max_bytes {
        let err = eos_ca::CsrError::TooLarge {
            size,
            max: limits.max_bytes,
        };
        return Err(refuse(ctx, &a, err.into()));
    }
    let rt = super::plan::runtime()?;
    let ca = setup(open_ca(ctx, files, &rt)?, conf)?;
    let account = Account {
        space: a.space.clone(),
        user: a.user.clone(),
    };
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let actor = actor();
    let mut extra = serde_json::Map::new();
    extra.insert("csr".into(), serde_json::json!(a.csr.display().to_string()));
    let issued = rt.block_on(issue_in(
        &tx,
        &ca,
        &IssueInput {
            csr: &input,
            account: &account,
            profile: a.profile,
            lifetime,
        },
        &IssueAudit {
            actor: &actor,
            action: "ca.sign",
            extra,
        },
        SystemTime::now(),
    ));
    let issued = match issued {
        Ok(issued) => issued,
        Err(e) => {
            // Roll back before the refusal or failure is audited.
            drop(tx);
            return Err(match e {
                IssuanceError::Refused(e) => refuse(ctx, &a, e),
                IssuanceError::Failed(e) => {
                    let code = e.code();
                    let message = e.to_string();
                    let err = anyhow::Error::new(e).context(format!(
                        "{}: not issued by {} [{code}]; nothing recorded",
                        a.csr.display(),
                        ca.signer_id()
                    ));
                    match audit_refusal(ctx, &a, "ca.sign-failed", code, Some(message)) {
                        Ok(()) => err,
                        Err(audit) => audit.context(format!("{err:#}")),
                    }
                }
                other => anyhow::Error::new(other),
            });
        }
    };
    let pem = issued.pem.as_str();
    let serial = issued.serial.to_string();
    let serial = serial.as_str();
    // The output file is written before the commit: if it cannot be
    // written, nothing is recorded; the rename is the last step, and a
    // failed commit removes the file again. A certificate signed but not
    // recorded is withdrawn from the signer (AWS Private CA revokes it), and
    // the error says so.
    let unrecorded = |e: anyhow::Error| {
        let withdrawal = rt.block_on(withdraw(&ca, &issued.serial));
        e.context(format!(
            "certificate {serial} was signed but not recorded; {withdrawal}"
        ))
    };
    if let Some(out) = &a.out {
        write_atomic(out, pem.as_bytes(), 0o644).map_err(unrecorded)?;
    }
    if let Err(e) = tx.commit() {
        let mut e = anyhow::Error::from(e);
        if let Some(out) = &a.out
            && let Err(rm) = std::fs::remove_file(out)
        {
            e = e.context(format!(
                "{} holds the unrecorded certificate and could not be removed: {rm}",
                out.display()
            ));
        }
        return Err(unrecorded(e));
    }
    let record = certs::get(store.conn(), serial)?;
    if ctx.json {
        return emit_json(&SignReport {
            status: "issued",
            record: &record,
            ignored_requests: &issued.ignored,
            out: a.out.as_ref().map(|p| p.display().to_string()),
            pem: a.out.is_none().then_some(pem),
        });
    }
    match &a.out {
        Some(out) => {
            let mut s = format!(
                "issued {} for {}/{} ({}, until {}) -> {}\n",
                record.serial,
                record.space,
                record.user,
                record.profile,
                record.not_after,
                out.display()
            );
            if issued.requested_ca {
                s.push_str("note: the CSR asked for CA powers; ignored and logged\n");
            }
            emit(&s)
        }
        None => emit(pem),
    }
}

/// Up to `max + 1` bytes of a file, and its size when it is a regular file
/// (a pipe's is unknown).
fn read_capped(path: &Path, max: usize) -> anyhow::Result<(Vec<u8>, Option<usize>)> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| bad_input!("{}: cannot open: {e}", path.display()))?;
    let size = f
        .metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .and_then(|m| usize::try_from(m.len()).ok());
    let mut buf = Vec::new();
    f.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| bad_input!("{}: cannot read: {e}", path.display()))?;
    let read = buf.len();
    Ok((buf, size.filter(|n| *n >= read)))
}

fn table(records: &[CertRecord]) -> String {
    table_with(records, "STATUS", |r| &r.status)
}

/// The certificate table, its last column `last` (`header`).
fn table_with(records: &[CertRecord], header: &str, last: impl Fn(&CertRecord) -> &str) -> String {
    use std::fmt::Write;
    if records.is_empty() {
        return "no certificates\n".to_owned();
    }
    let mut out = format!(
        "{:<32}  {:<16}  {:<24}  {:<8}  {:<20}  {header}\n",
        "SERIAL", "SPACE", "USER", "PROFILE", "NOT AFTER"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<32}  {:<16}  {:<24}  {:<8}  {:<20}  {}",
            r.serial,
            r.space,
            r.user,
            r.profile,
            r.not_after,
            last(r)
        );
    }
    out
}

fn list(a: ListArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let records = certs::list(
        store.conn(),
        &CertFilter {
            space: a.space.as_ref().map(SpaceId::as_str),
            user: a.user.as_ref().map(UserId::as_str),
            status: a.status.as_deref(),
            ..CertFilter::default()
        },
    )?;
    if ctx.json {
        return emit_json(&records);
    }
    emit(&table(&records))
}

/// `ca expiring`'s table: the successor's serial in the last column (`-`
/// when the certificate was not renewed), and a count of each.
fn expiring_table(records: &[CertRecord]) -> String {
    let mut out = table_with(records, "RENEWED BY", |r| {
        r.renewed_by.as_deref().unwrap_or("-")
    });
    if !records.is_empty() {
        let renewed = records.iter().filter(|r| r.renewed_by.is_some()).count();
        out.push_str(&format!(
            "{} expiring: {renewed} renewed, {} not renewed\n",
            records.len(),
            records.len() - renewed
        ));
    }
    out
}

#[derive(Serialize)]
struct AccountReport<'a> {
    status: &'static str,
    space: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled: Option<&'a eos_store::accounts::DisabledAccount>,
    active_certificates: usize,
}

/// The account's active certificates (`ca disable` says they stay valid).
fn active_certificates(ctx: &crate::Ctx, a: &AccountArgs) -> anyhow::Result<usize> {
    let store = ctx.store()?;
    Ok(certs::list(
        store.conn(),
        &CertFilter {
            space: Some(a.space.as_str()),
            user: Some(a.user.as_str()),
            status: Some("active"),
            ..CertFilter::default()
        },
    )?
    .len())
}

fn disable(a: DisableArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let (space, user) = (a.account.space.as_str(), a.account.user.as_str());
    if a.reason.trim().is_empty() {
        return Err(bad_input!("--reason: say why the account is disabled"));
    }
    let actor = actor();
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let changed = eos_store::accounts::disable_in(&tx, space, user, &actor, &a.reason)?;
    if changed {
        let subject = eos_identity::account_uri(&a.account.space, &a.account.user);
        audit_in(
            &tx,
            &AuditEntry::new(&actor, "account.disabled", &subject)
                .with_detail(serde_json::json!({ "reason": a.reason })),
        )?;
    }
    let record = eos_store::accounts::disabled(&tx, space, user)?;
    tx.commit()?;
    let active = active_certificates(ctx, &a.account)?;
    let status = if changed {
        "disabled"
    } else {
        "already-disabled"
    };
    if ctx.json {
        return emit_json(&AccountReport {
            status,
            space,
            user,
            disabled: record.as_ref(),
            active_certificates: active,
        });
    }
    let since = record
        .as_ref()
        .map(|r| format!(" since {} by {}: {}", r.disabled_at, r.actor, r.reason))
        .unwrap_or_default();
    emit(&format!(
        "{status} {space}/{user}{since}\nno certificate is issued to it or renewed for it until `eos-sec ca enable`; its {active} active certificate(s) stay valid until they expire (`eos-sec ca revoke` cuts one off now)\n"
    ))
}

fn enable(a: AccountArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let (space, user) = (a.space.as_str(), a.user.as_str());
    let actor = actor();
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let was = eos_store::accounts::disabled(&tx, space, user)?;
    let changed = eos_store::accounts::enable_in(&tx, space, user)?;
    if changed {
        let subject = eos_identity::account_uri(&a.space, &a.user);
        let reason = was.as_ref().map(|w| w.reason.as_str());
        audit_in(
            &tx,
            &AuditEntry::new(&actor, "account.enabled", &subject)
                .with_detail(serde_json::json!({ "disabled_for": reason })),
        )?;
    }
    tx.commit()?;
    let active = active_certificates(ctx, &a)?;
    let status = if changed { "enabled" } else { "not-disabled" };
    if ctx.json {
        return emit_json(&AccountReport {
            status,
            space,
            user,
            disabled: None,
            active_certificates: active,
        });
    }
    emit(&format!(
        "{status} {space}/{user}\ncertificates are issued to it and renewed for it again\n"
    ))
}

fn serial_arg(s: &str) -> anyhow::Result<String> {
    Ok(Serial::from_hex(s)
        .map_err(|e| bad_input!("{e}"))?
        .to_string())
}

fn show(a: ShowArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let r = certs::get(store.conn(), &serial_arg(&a.serial)?).map_err(not_found)?;
    if a.pem {
        return emit(&r.pem);
    }
    if ctx.json {
        return emit_json(&r);
    }
    let mut s = format!(
        "serial           {}\naccount          {}/{}\nprofile          {}\nkey fingerprint  {}\nvalid            {} to {}\nissued           {} by {}\nstatus           {}\n",
        r.serial,
        r.space,
        r.user,
        r.profile,
        r.key_fingerprint,
        r.not_before,
        r.not_after,
        r.issued_at,
        r.signer,
        r.status
    );
    if let (Some(at), Some(why)) = (&r.revoked_at, &r.revocation_reason) {
        s.push_str(&format!("revoked          {at} ({why})\n"));
    }
    emit(&s)
}

fn not_found(e: eos_store::StoreError) -> anyhow::Error {
    match e {
        eos_store::StoreError::NotFound { .. } => bad_input!("{e}; see `eos-sec ca list`"),
        other => anyhow::Error::new(other),
    }
}

#[derive(Serialize)]
struct RevokeReport<'a> {
    /// `revoked` or `already-revoked`.
    status: &'static str,
    /// The inventory record after the revocation (its own `status` is the
    /// certificate's, hence not flattened into the report).
    certificate: &'a CertRecord,
    crl_number: Option<u64>,
    /// The CRL file (local CA); AWS Private CA publishes its own.
    crl: Option<String>,
}

/// What a revocation did.
pub(crate) struct Revocation {
    /// The inventory record after it.
    pub record: CertRecord,
    /// The CRL it produced (local CA).
    pub crl_number: Option<u64>,
    /// Whether it was revoked now (not already).
    pub changed: bool,
    /// The CRL file (local CA); AWS Private CA publishes its own.
    pub crl: Option<String>,
    /// The configured signer.
    pub signer: String,
}

/// Revoke `serial` (hex, canonical) with the configured CA: recorded and
/// audited as `action` with `extra` in its detail; for the local CA a new
/// CRL is written and queued for the gate in the same transaction, for AWS
/// Private CA RevokeCertificate is called first.
pub(crate) fn revoke_serial(
    ctx: &crate::Ctx,
    serial: &str,
    reason: RevocationReason,
    action: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Revocation> {
    let files = CaFiles::new(&ctx.state_dir);
    let conf = &ctx.config.ca;
    let (ca, rt) = match conf.backend {
        CaBackendKind::Local => (Ca::Local(Box::new(load_ca(&files, conf)?)), None),
        CaBackendKind::Acmpca => {
            let rt = super::plan::runtime()?;
            (Ca::Private(Box::new(open_private(ctx, &rt)?)), Some(rt))
        }
    };
    let signer_id = match &ca {
        Ca::Local(_) => certs::LOCAL_SIGNER,
        Ca::Private(p) => p.arn(),
    };
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let known = certs::get(&tx, serial).map_err(not_found)?;
    if known.signer != signer_id {
        return Err(bad_input!(
            "{serial} was issued by {}, not by the configured CA ({signer_id}); revoke it with the [ca] backend that issued it",
            known.signer
        ));
    }
    let now = eos_ca::rfc3339(SystemTime::now());
    let outcome = certs::revoke(&tx, serial, &now, reason.as_str()).map_err(not_found)?;
    let (record, number, changed) = match outcome {
        certs::Revoked::Already(r) => (r, None, false),
        certs::Revoked::Now(r) => {
            let mut detail = serde_json::json!({
                "space": r.space, "user": r.user, "reason": reason, "signer": signer_id,
            });
            let number = match (&ca, &rt) {
                (Ca::Local(local), _) => {
                    let (number, pem) = issue_crl(local, &tx, crl_validity(conf)?)?;
                    super::gate::enqueue_crl(ctx, &tx, number)?;
                    write_atomic(&files.crl, pem.as_bytes(), 0o644)?;
                    detail["crl_number"] = serde_json::json!(number);
                    Some(number)
                }
                (Ca::Private(private), Some(rt)) => {
                    // AWS first: if it refuses, the inventory is not
                    // changed (the transaction is dropped). Revoked there
                    // already (an earlier run that failed to commit) is
                    // the same outcome.
                    let serial = Serial::from_hex(serial).map_err(|e| bad_input!("{e}"))?;
                    let done = rt.block_on(private.revoke(&serial, reason))?;
                    detail["aws"] = serde_json::json!(match done {
                        eos_aws::acmpca::Revocation::Revoked => "revoked",
                        _ => "already-revoked",
                    });
                    // Private CA signs the CRL; sync carries it to the edge
                    // once it lists this serial.
                    super::gate::enqueue_ca_crl(ctx, &tx)?;
                    None
                }
                (Ca::Private(_), None) => None,
            };
            if let Some(d) = detail.as_object_mut() {
                d.extend(extra);
            }
            audit_in(
                &tx,
                &AuditEntry::new(&actor(), action, serial).with_detail(detail),
            )?;
            (r, number, true)
        }
    };
    tx.commit()?;
    Ok(Revocation {
        record,
        crl_number: number,
        changed,
        crl: matches!(ca, Ca::Local(_)).then(|| files.crl.display().to_string()),
        signer: signer_id.to_owned(),
    })
}

fn revoke(a: RevokeArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let serial = serial_arg(&a.serial)?;
    let Revocation {
        record,
        crl_number: number,
        changed,
        crl,
        signer: signer_id,
    } = revoke_serial(ctx, &serial, a.reason, "ca.revoke", serde_json::Map::new())?;
    if ctx.json {
        return emit_json(&RevokeReport {
            status: if changed {
                "revoked"
            } else {
                "already-revoked"
            },
            certificate: &record,
            crl_number: number,
            crl,
        });
    }
    emit(&match (changed, number, &crl) {
        (true, Some(n), Some(crl)) => format!(
            "revoked {} ({}/{}, {}); CRL {n} written to {crl}\n",
            record.serial, record.space, record.user, a.reason
        ),
        (true, _, _) => format!(
            "revoked {} ({}/{}, {}) in AWS Private CA {signer_id}; it publishes the revocation in its own CRL\n",
            record.serial, record.space, record.user, a.reason
        ),
        (false, _, _) => format!(
            "{} was already revoked at {}; nothing changed\n",
            record.serial,
            record.revoked_at.as_deref().unwrap_or("?")
        ),
    })
}

fn crl(a: OutArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let ca = load_ca(files, conf)?;
    let validity = crl_validity(conf)?;
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let (number, pem) = issue_crl(&ca, &tx, validity)?;
    super::gate::enqueue_crl(ctx, &tx, number)?;
    write_atomic(&files.crl, pem.as_bytes(), 0o644)?;
    if let Some(out) = &a.out {
        write_atomic(out, pem.as_bytes(), 0o644)?;
    }
    tx.commit()?;
    if ctx.json {
        return emit_json(&serde_json::json!({
            "crl_number": number, "crl": files.crl.display().to_string(), "pem": pem,
        }));
    }
    emit(&pem)
}

/// For `sync --watch`: issue the next CRL (queued for the certificate gate)
/// once the latest has less than half its validity left, so an edge never
/// holds an expired CRL even when nothing is revoked. The number issued, or
/// `None` when the latest is fresh or the CA is not local (AWS Private CA
/// publishes its own CRL).
pub(crate) fn refresh_crl(ctx: &crate::Ctx) -> anyhow::Result<Option<u64>> {
    let conf = &ctx.config.ca;
    if conf.backend != CaBackendKind::Local {
        return Ok(None);
    }
    let validity = crl_validity(conf)?;
    let mut store = ctx.store()?;
    if let Some(latest) = certs::latest_crl(store.conn())? {
        let next = time::OffsetDateTime::parse(
            &latest.next_update,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "state database: CRL {}: bad next_update: {e}",
                latest.number
            )
        })?;
        let left = next - time::OffsetDateTime::now_utc();
        if left > validity / 2 {
            return Ok(None);
        }
    }
    let files = CaFiles::new(&ctx.state_dir);
    let ca = load_ca(&files, conf)?;
    let tx = store.transaction()?;
    let (number, pem) = issue_crl(&ca, &tx, validity)?;
    super::gate::enqueue_crl(ctx, &tx, number)?;
    write_atomic(&files.crl, pem.as_bytes(), 0o644)?;
    tx.commit()?;
    Ok(Some(number))
}

/// The configured CA's subject and trust bundle (PEM): the local root, or
/// the Private CA's certificate and chain (`ca bundle`, `gate publish`).
pub(crate) fn trust_bundle(ctx: &crate::Ctx) -> anyhow::Result<(String, String)> {
    let conf = &ctx.config.ca;
    Ok(match conf.backend {
        CaBackendKind::Local => {
            let ca = load_ca(&CaFiles::new(&ctx.state_dir), conf)?;
            (ca.info().subject().to_string(), ca.trust_bundle()?)
        }
        CaBackendKind::Acmpca => {
            let ca = open_private(ctx, &super::plan::runtime()?)?;
            (ca.info().subject().to_string(), ca.trust_bundle())
        }
    })
}

fn bundle(a: OutArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let (subject, pem) = trust_bundle(ctx)?;
    if let Some(out) = &a.out {
        write_atomic(out, pem.as_bytes(), 0o644)?;
    }
    if ctx.json {
        return emit_json(&serde_json::json!({
            "subject": subject,
            "pem": pem,
        }));
    }
    emit(&pem)
}

fn expiring(a: ExpiringArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let within = duration(&a.within, "--within")?;
    let now = SystemTime::now();
    let store = ctx.store()?;
    let from = eos_ca::rfc3339(now);
    let until = eos_ca::rfc3339(now + within);
    let records = certs::list(
        store.conn(),
        &CertFilter {
            status: Some("active"),
            not_after_from: Some(&from),
            not_after_before: Some(&until),
            ..CertFilter::default()
        },
    )?;
    if ctx.json {
        return emit_json(&records);
    }
    emit(&expiring_table(&records))
}
