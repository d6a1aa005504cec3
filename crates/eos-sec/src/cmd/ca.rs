//! `eos-sec ca ...`: the local entityOS CA from the command line.
//!
//! Files live in `<state-dir>/ca/`: `ca.key` (PKCS#8, mode 0600, encrypted
//! when `[ca] key_passphrase_env` is set), `ca.pem`, `crl.pem`. The
//! inventory and CRL numbers live in the state database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_ca::{
    Account, CaEnv, CsrLimits, IssueRequest, KeyOwner, LocalCa, Passphrase, Profile,
    RevocationReason, RevokedEntry, Serial,
};
use eos_identity::{SpaceId, UserId};
use eos_store::certs::{self, CertFilter, CertRecord, CrlRecord, NewCert};
use eos_store::{AuditEntry, audit_in};
use serde::Serialize;

use crate::config::CaSection;
use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// Run the entityOS CA (local key).
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
    /// Issue a fresh CRL (next CRL number) to <state-dir>/ca/crl.pem.
    Crl(OutArgs),
    /// Print the trust bundle (the CA chain) for an ALB trust store or an
    /// API Gateway truststore.
    Bundle(OutArgs),
    /// Active certificates that expire within a duration.
    Expiring(ExpiringArgs),
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
    /// The CA certificate, PEM
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
    match cmd {
        CaCommand::Init(a) => init(a, ctx, &files, conf),
        CaCommand::Import(a) => import(a, ctx, &files, conf),
        CaCommand::Sign(a) => sign(a, ctx, &files, conf),
        CaCommand::List(a) => list(a, ctx),
        CaCommand::Show(a) => show(a, ctx),
        CaCommand::Revoke(a) => revoke(a, ctx, &files, conf),
        CaCommand::Crl(a) => crl(a, ctx, &files, conf),
        CaCommand::Bundle(a) => bundle(a, ctx, &files, conf),
        CaCommand::Expiring(a) => expiring(a, ctx),
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
    eos_ca::parse_duration(s).map_err(|e| bad_input!("{what}: {e}"))
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

fn policy(conf: &CaSection) -> anyhow::Result<eos_ca::IssuancePolicy> {
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

/// The CA of the state directory, with its issuance policy and CSR limits,
/// for `eos-sec serve`; `None` when no CA was made or imported there.
pub(crate) fn load_local(
    state_dir: &Path,
    conf: &CaSection,
) -> anyhow::Result<Option<(LocalCa, eos_ca::IssuancePolicy, CsrLimits)>> {
    let files = CaFiles::new(state_dir);
    if !files.key.exists() {
        return Ok(None);
    }
    Ok(Some((
        load_ca(&files, conf)?,
        policy(conf)?,
        csr_limits(conf),
    )))
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
    tx: &eos_store::rusqlite::Transaction<'_>,
    validity: Duration,
) -> anyhow::Result<(u64, String)> {
    let now = SystemTime::now();
    let revoked = certs::revoked_unexpired(tx, &eos_ca::rfc3339(now))?;
    let mut entries = Vec::with_capacity(revoked.len());
    for r in &revoked {
        entries.push(revoked_entry(r)?);
    }
    let number = certs::next_crl_number(tx)?;
    let crl = ca.crl(number, &entries, now, validity)?;
    let pem = eos_ca::crl_pem(&crl)?;
    certs::record_crl(
        tx,
        &CrlRecord {
            number,
            this_update: eos_ca::rfc3339(now),
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

/// A refused CSR: an audit entry (the code, the account asked for and the
/// file name; never the CSR body), JSON on stdout with `--json`, and an
/// error whose message starts with the file and the stable code
/// (`csr refused [csr-weak-hash]`). The caller holds no open transaction.
fn refuse(ctx: &crate::Ctx, a: &SignArgs, err: eos_ca::IssueError) -> anyhow::Error {
    let path = &a.csr;
    let context = format!("{}: csr refused [{}]", path.display(), err.code());
    if let Err(e) = audit_refusal(ctx, a, err.code()) {
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

fn audit_refusal(ctx: &crate::Ctx, a: &SignArgs, code: &str) -> anyhow::Result<()> {
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    audit_in(
        &tx,
        &AuditEntry::new(&actor(), "ca.csr-refused", code).with_detail(serde_json::json!({
            "space": a.space,
            "user": a.user,
            "profile": a.profile,
            "csr": a.csr.display().to_string(),
        })),
    )?;
    tx.commit()?;
    Ok(())
}

fn sign(a: SignArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let policy = policy(conf)?;
    let limits = csr_limits(conf);
    let lifetime = a
        .lifetime
        .as_deref()
        .map(|s| duration(s, "--lifetime"))
        .transpose()?;
    // Read at most one byte over the cap: a huge file is refused without
    // being read whole.
    let input = read_capped(&a.csr, limits.max_bytes)?;
    let ca = load_ca(files, conf)?;
    let csr = match eos_ca::validate_csr(&input, &limits) {
        Ok(c) => c,
        Err(e) => {
            return Err(refuse(ctx, &a, e.into()));
        }
    };
    let account = Account {
        space: a.space.clone(),
        user: a.user.clone(),
    };
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let fingerprint = csr.fingerprint().to_string();
    let owner = certs::key_owner(&tx, &fingerprint)?
        .map(|(space, user)| -> anyhow::Result<KeyOwner> {
            Ok(KeyOwner {
                space: SpaceId::new(&space)?,
                user: UserId::new(&user)?,
            })
        })
        .transpose()?;
    let request = IssueRequest {
        csr: &csr,
        account: &account,
        profile: a.profile,
        lifetime,
    };
    let plan = match eos_ca::plan_certificate(
        ca.info(),
        &request,
        &policy,
        owner.as_ref(),
        SystemTime::now(),
    ) {
        Ok(p) => p,
        Err(e) => {
            // Roll back the read transaction before the refusal is audited.
            drop(tx);
            return Err(refuse(ctx, &a, e));
        }
    };
    let cert = ca.sign(&plan)?;
    let pem = eos_ca::certificate_pem(&cert)?;
    let serial = eos_ca::serial_of(&cert).to_string();
    certs::record_issued(
        &tx,
        &NewCert {
            serial: &serial,
            space: account.space.as_str(),
            user: account.user.as_str(),
            profile: a.profile.as_str(),
            key_fingerprint: &fingerprint,
            not_before: &eos_ca::rfc3339(plan.not_before()),
            not_after: &eos_ca::rfc3339(plan.not_after()),
            signer: "local",
            pem: &pem,
        },
    )?;
    let actor = actor();
    audit_in(
        &tx,
        &AuditEntry::new(&actor, "ca.sign", &serial).with_detail(serde_json::json!({
            "space": account.space,
            "user": account.user,
            "profile": a.profile,
            "key_fingerprint": fingerprint,
            "key": csr.key_kind().to_string(),
            "ignored_requests": csr.ignored(),
        })),
    )?;
    if csr.requested_ca() {
        // Someone asked this CA to make them a CA: worth its own entry.
        audit_in(
            &tx,
            &AuditEntry::new(&actor, "ca.csr-requested-ca", &serial).with_detail(
                serde_json::json!({"space": account.space, "user": account.user, "csr": a.csr.display().to_string()}),
            ),
        )?;
    }
    // The output file is written before the commit: if it cannot be
    // written, nothing is recorded; the rename is the last step.
    if let Some(out) = &a.out {
        write_atomic(out, pem.as_bytes(), 0o644)?;
    }
    tx.commit()?;
    let record = certs::get(store.conn(), &serial)?;
    if ctx.json {
        return emit_json(&SignReport {
            status: "issued",
            record: &record,
            ignored_requests: csr.ignored(),
            out: a.out.as_ref().map(|p| p.display().to_string()),
            pem: a.out.is_none().then_some(pem.as_str()),
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
            if csr.requested_ca() {
                s.push_str("note: the CSR asked for CA powers; ignored and logged\n");
            }
            emit(&s)
        }
        None => emit(&pem),
    }
}

fn read_capped(path: &Path, max: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| bad_input!("{}: cannot open: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| bad_input!("{}: cannot read: {e}", path.display()))?;
    Ok(buf)
}

fn table(records: &[CertRecord]) -> String {
    use std::fmt::Write;
    if records.is_empty() {
        return "no certificates\n".to_owned();
    }
    let mut out = format!(
        "{:<32}  {:<16}  {:<24}  {:<8}  {:<20}  {}\n",
        "SERIAL", "SPACE", "USER", "PROFILE", "NOT AFTER", "STATUS"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<32}  {:<16}  {:<24}  {:<8}  {:<20}  {}",
            r.serial, r.space, r.user, r.profile, r.not_after, r.status
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
    status: &'static str,
    #[serde(flatten)]
    record: &'a CertRecord,
    crl_number: Option<u64>,
    crl: String,
}

fn revoke(
    a: RevokeArgs,
    ctx: &crate::Ctx,
    files: &CaFiles,
    conf: &CaSection,
) -> anyhow::Result<()> {
    let serial = serial_arg(&a.serial)?;
    let ca = load_ca(files, conf)?;
    let validity = crl_validity(conf)?;
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let now = eos_ca::rfc3339(SystemTime::now());
    let outcome = certs::revoke(&tx, &serial, &now, a.reason.as_str()).map_err(not_found)?;
    let (record, number) = match outcome {
        certs::Revoked::Already(r) => (r, None),
        certs::Revoked::Now(r) => {
            let (number, pem) = issue_crl(&ca, &tx, validity)?;
            audit_in(
                &tx,
                &AuditEntry::new(&actor(), "ca.revoke", &serial).with_detail(serde_json::json!({
                    "space": r.space, "user": r.user, "reason": a.reason, "crl_number": number,
                })),
            )?;
            write_atomic(&files.crl, pem.as_bytes(), 0o644)?;
            (r, Some(number))
        }
    };
    tx.commit()?;
    let crl = files.crl.display().to_string();
    if ctx.json {
        return emit_json(&RevokeReport {
            status: if number.is_some() {
                "revoked"
            } else {
                "already-revoked"
            },
            record: &record,
            crl_number: number,
            crl,
        });
    }
    emit(&match number {
        Some(n) => format!(
            "revoked {} ({}/{}, {}); CRL {n} written to {crl}\n",
            record.serial, record.space, record.user, a.reason
        ),
        None => format!(
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

fn bundle(a: OutArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let ca = load_ca(files, conf)?;
    let pem = ca.trust_bundle()?;
    if let Some(out) = &a.out {
        write_atomic(out, pem.as_bytes(), 0o644)?;
    }
    if ctx.json {
        return emit_json(&serde_json::json!({
            "subject": ca.info().subject().to_string(),
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
    emit(&table(&records))
}
