//! `eos-sec ca ...`: the entityOS CA from the command line.
//!
//! `[ca] backend` picks who signs. `local` (the default): files live in
//! `<state-dir>/ca/`: `ca.key` (PKCS#8, mode 0600, encrypted when
//! `[ca] key_passphrase_env` is set), `ca.pem`, `crl.pem`. `acmpca`: AWS
//! Private CA `[ca] certificate_authority_arn` signs and revokes and
//! publishes its own CRL. Either way the inventory lives in the state
//! database and every certificate goes through the one issuance flow
//! (`eos_ops::issuance`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::actor;
use anyhow::Context;
use clap::{Args, Subcommand};
use eos_aws::acmpca::PrivateCa;
use eos_ca::{Account, CaEnv, LocalCa, Profile, RevocationReason, Serial};
use eos_identity::{SpaceId, UserId};
use eos_ops::ca::inventory::{self, CertStatus, InventoryRecord};
use eos_ops::ca::{Audit, Ca, CaError, CaFiles, CrlPolicy, Revocation, SignError, SignRequest};
use eos_ops::issuance::CaSetup;
use serde::Serialize;

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
        let arn = conf.arn()?;
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

fn duration(s: &str, what: &str) -> anyhow::Result<Duration> {
    eos_codes::duration::parse_seconds(s).map_err(|e| bad_input!("{what}: {e}"))
}

/// `[ca] crl_validity` and whether `[gate]` hears of each CRL.
fn crl_policy(ctx: &crate::Ctx) -> anyhow::Result<CrlPolicy> {
    Ok(CrlPolicy {
        validity: ctx.config.ca.crl_validity()?,
        gate: ctx.config.gate.bucket.is_some(),
    })
}

fn load_ca(files: &CaFiles, conf: &CaSection) -> anyhow::Result<LocalCa> {
    if !files.exists() {
        // Before the passphrase: a missing CA is the first thing to say.
        return Ok(eos_ops::ca::load_local(files, None)?);
    }
    Ok(eos_ops::ca::load_local(files, conf.passphrase()?.as_ref())?)
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
    if ctx.config.ca.backend == CaBackendKind::Local && !files.exists() {
        return Ok(None);
    }
    Ok(Some(issuing_setup(ctx, rt)?))
}

/// The configured CA ready to issue (local key or AWS Private CA).
pub(crate) fn issuing_setup(
    ctx: &crate::Ctx,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<CaSetup> {
    let files = CaFiles::new(&ctx.state_dir);
    let conf = &ctx.config.ca;
    Ok(open_ca(ctx, &files, rt)?.setup(conf.issuance_policy()?, conf.csr_limits())?)
}

/// Connect to AWS Private CA `[ca] certificate_authority_arn`, reached as
/// every AWS command reaches AWS: `[backend]` region, profile and
/// endpoint_url over the standard AWS configuration (`ca sign` has its own
/// `--profile`, so the CA commands take no AWS flags). Also for a caller
/// already inside the async runtime (the certificate gate reads the
/// Private CA's CRL there).
pub(crate) async fn connect_private(ctx: &crate::Ctx) -> anyhow::Result<PrivateCa> {
    let conf = &ctx.config.ca;
    let arn = conf.arn()?;
    let opts = aws_options(&AwsArgs::default(), &ctx.config.backend);
    PrivateCa::connect(&opts, arn, conf.issue_wait()?)
        .await
        .with_context(|| format!("[ca] certificate_authority_arn {arn}"))
}

/// The configured CA: the local key or AWS Private CA.
fn open_ca(ctx: &crate::Ctx, files: &CaFiles, rt: &tokio::runtime::Runtime) -> anyhow::Result<Ca> {
    match ctx.config.ca.backend {
        CaBackendKind::Local => Ok(Ca::Local(Box::new(load_ca(files, &ctx.config.ca)?))),
        CaBackendKind::Acmpca => Ok(Ca::Private(Box::new(rt.block_on(connect_private(ctx))?))),
    }
}

/// Install a new local CA and print what was written.
fn install(ca: &LocalCa, action: &str, ctx: &crate::Ctx, files: &CaFiles) -> anyhow::Result<()> {
    if files.exists() || files.cert.exists() {
        // Before the passphrase: an existing CA is the first thing to say.
        let dir = files.dir.clone();
        return Err(CaError::Exists { dir }.into());
    }
    let pass = ctx.config.ca.passphrase()?;
    let crls = crl_policy(ctx)?;
    let mut store = ctx.store()?;
    let r = eos_ops::ca::install(&mut store, files, ca, pass.as_ref(), crls, &actor(), action)?;
    if ctx.json {
        return emit_json(&r);
    }
    emit(&format!(
        "CA ready: {}\n  key fingerprint  {}\n  valid until      {}\n  key              {} (0600{})\n  certificate      {}\n  crl              {} (number {})\n",
        r.subject,
        r.key_fingerprint,
        eos_store::format_rfc3339(r.not_after),
        r.key.display(),
        if r.key_encrypted { ", encrypted" } else { "" },
        r.certificate.display(),
        r.crl.display(),
        r.crl_number
    ))
}

fn init(a: InitArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let ca = LocalCa::generate(a.env, conf.root_lifetime()?, SystemTime::now())?;
    install(&ca, "ca.init", ctx, files)
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
    let pass = conf.passphrase()?;
    let ca = LocalCa::from_pem(&key, &cert, pass.as_ref()).map_err(|e| {
        bad_input!(
            "importing {} and {}: {e}",
            a.key.display(),
            a.cert.display()
        )
    })?;
    install(&ca, "ca.import", ctx, files)
}

#[derive(Serialize)]
struct SignReport<'a> {
    status: &'static str,
    #[serde(flatten)]
    record: &'a InventoryRecord,
    ignored_requests: &'a [eos_ca::IgnoredRequest],
    out: Option<String>,
    pem: Option<&'a str>,
}

/// A refused or failed `ca sign` (audited by the operation): an error whose
/// message starts with the file, what was refused and the stable code (`csr
/// refused [csr-weak-hash]`, `lifetime refused [lifetime-over-cap]`); with
/// `--json` a refusal is the refusal document (`output::refusals`).
fn sign_error(a: &SignArgs, e: SignError) -> anyhow::Error {
    match &e {
        SignError::Refused(_) | SignError::Failed { .. } | SignError::Unaudited { .. } => {
            let context = format!("{}: {e}", a.csr.display());
            anyhow::Error::new(e).context(context)
        }
        _ => anyhow::Error::new(e),
    }
}

fn sign(a: SignArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let limits = conf.csr_limits();
    let lifetime = a
        .lifetime
        .as_deref()
        .map(|s| duration(s, "--lifetime"))
        .transpose()?;
    // Read at most one byte over the cap: a huge file is refused without
    // being read whole, with its size when the file system knows it.
    let (input, size) = read_capped(&a.csr, limits.max_bytes)?;
    let account = Account {
        space: a.space.clone(),
        user: a.user.clone(),
    };
    let csr_name = a.csr.display().to_string();
    let req = SignRequest {
        csr: &input,
        csr_size: size,
        csr_name: &csr_name,
        account: &account,
        profile: a.profile,
        lifetime,
        out: a.out.as_deref(),
    };
    let actor = actor();
    let mut store = ctx.store()?;
    // Refused before the CA is opened (AWS Private CA is not asked).
    eos_ops::ca::check_size(&mut store, &req, limits.max_bytes, &actor)
        .map_err(|e| sign_error(&a, e))?;
    let rt = super::plan::runtime()?;
    let ca = open_ca(ctx, files, &rt)?.setup(conf.issuance_policy()?, limits)?;
    let signed = rt
        .block_on(eos_ops::ca::sign(
            &mut store,
            &ca,
            &req,
            &actor,
            SystemTime::now(),
        ))
        .map_err(|e| sign_error(&a, e))?;
    let record = &signed.record;
    if ctx.json {
        return emit_json(&SignReport {
            status: "issued",
            record,
            ignored_requests: &signed.ignored,
            out: a.out.as_ref().map(|p| p.display().to_string()),
            pem: a.out.is_none().then_some(signed.pem.as_str()),
        });
    }
    match &a.out {
        Some(out) => {
            let mut s = format!(
                "issued {} for {}/{} ({}, until {}) -> {}\n",
                record.serial,
                record.space,
                record.user,
                record.profile.as_str(),
                eos_store::format_rfc3339(record.not_after),
                out.display()
            );
            if signed.requested_ca {
                s.push_str("note: the CSR asked for CA powers; ignored and logged\n");
            }
            emit(&s)
        }
        None => emit(&signed.pem),
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

/// The certificate table, its last column `last` (`header`).
fn table(
    records: &[InventoryRecord],
    header: &str,
    last: impl Fn(&InventoryRecord) -> String,
) -> String {
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
            r.serial.to_string(),
            r.space.as_str(),
            r.user.as_str(),
            r.profile.as_str(),
            eos_store::format_rfc3339(r.not_after),
            last(r)
        );
    }
    out
}

fn list(a: ListArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let status = match a.status.as_deref() {
        Some("revoked") => Some(CertStatus::Revoked),
        Some(_) => Some(CertStatus::Active),
        None => None,
    };
    let store = ctx.store()?;
    let records = inventory::list(
        store.conn(),
        &inventory::Query {
            space: a.space.as_ref(),
            user: a.user.as_ref(),
            status,
        },
    )?;
    if ctx.json {
        return emit_json(&records);
    }
    emit(&table(&records, "STATUS", |r| r.status.as_str().to_owned()))
}

/// `ca expiring`'s table: the successor's serial in the last column (`-`
/// when the certificate was not renewed), and a count of each.
fn expiring_table(records: &[InventoryRecord]) -> String {
    let mut out = table(records, "RENEWED BY", |r| {
        r.renewed_by
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
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

fn account_of(a: &AccountArgs) -> Account {
    Account {
        space: a.space.clone(),
        user: a.user.clone(),
    }
}

fn disable(a: DisableArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let (space, user) = (a.account.space.as_str(), a.account.user.as_str());
    let mut store = ctx.store()?;
    let r = eos_ops::ca::disable(&mut store, &account_of(&a.account), &a.reason, &actor())
        .map_err(|e| match e {
            CaError::NoReason => bad_input!("--reason: {e}"),
            other => other.into(),
        })?;
    let status = if r.changed {
        "disabled"
    } else {
        "already-disabled"
    };
    if ctx.json {
        return emit_json(&AccountReport {
            status,
            space,
            user,
            disabled: r.disabled.as_ref(),
            active_certificates: r.active_certificates,
        });
    }
    let since = r
        .disabled
        .as_ref()
        .map(|r| format!(" since {} by {}: {}", r.disabled_at, r.actor, r.reason))
        .unwrap_or_default();
    emit(&format!(
        "{status} {space}/{user}{since}\nno certificate is issued to it or renewed for it until `eos-sec ca enable`; its {} active certificate(s) stay valid until they expire (`eos-sec ca revoke` cuts one off now)\n",
        r.active_certificates
    ))
}

fn enable(a: AccountArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let (space, user) = (a.space.as_str(), a.user.as_str());
    let mut store = ctx.store()?;
    let r = eos_ops::ca::enable(&mut store, &account_of(&a), &actor())?;
    let status = if r.changed { "enabled" } else { "not-disabled" };
    if ctx.json {
        return emit_json(&AccountReport {
            status,
            space,
            user,
            disabled: None,
            active_certificates: r.active_certificates,
        });
    }
    emit(&format!(
        "{status} {space}/{user}\ncertificates are issued to it and renewed for it again\n"
    ))
}

fn serial_arg(s: &str) -> anyhow::Result<Serial> {
    Serial::from_hex(s).map_err(|e| bad_input!("{e}"))
}

/// A serial the inventory does not have is bad input, with where to look.
fn not_found(e: impl Into<anyhow::Error>) -> anyhow::Error {
    let e = e.into();
    let missing = matches!(
        e.downcast_ref::<eos_store::StoreError>(),
        Some(eos_store::StoreError::NotFound { .. })
    ) || matches!(e.downcast_ref::<CaError>(), Some(CaError::NotFound { .. }));
    if missing {
        return bad_input!("{e}; see `eos-sec ca list`");
    }
    e
}

fn show(a: ShowArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let r = inventory::get(store.conn(), &serial_arg(&a.serial)?).map_err(not_found)?;
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
        r.profile.as_str(),
        r.key_fingerprint,
        eos_store::format_rfc3339(r.not_before),
        eos_store::format_rfc3339(r.not_after),
        eos_store::format_rfc3339(r.issued_at),
        r.signer,
        r.status.as_str()
    );
    if let (Some(at), Some(why)) = (r.revoked_at, r.revocation_reason) {
        s.push_str(&format!(
            "revoked          {} ({})\n",
            eos_store::format_rfc3339(at),
            why.as_str()
        ));
    }
    emit(&s)
}

#[derive(Serialize)]
struct RevokeReport<'a> {
    /// `revoked` or `already-revoked`.
    status: &'static str,
    /// The inventory record after the revocation (its own `status` is the
    /// certificate's, hence not flattened into the report).
    certificate: &'a InventoryRecord,
    crl_number: Option<u64>,
    /// The CRL file (local CA); AWS Private CA publishes its own.
    crl: Option<String>,
}

/// Revoke `serial` with the configured CA, audited as `action` with
/// `extra` in its detail ([`eos_ops::ca::revoke`]).
pub(crate) fn revoke_serial(
    ctx: &crate::Ctx,
    serial: &Serial,
    reason: RevocationReason,
    action: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Revocation> {
    let files = CaFiles::new(&ctx.state_dir);
    let rt = super::plan::runtime()?;
    let ca = open_ca(ctx, &files, &rt)?;
    let crls = crl_policy(ctx)?;
    let mut store = ctx.store()?;
    let actor = actor();
    let audit = Audit {
        actor: &actor,
        action,
        extra,
    };
    rt.block_on(eos_ops::ca::revoke(
        &mut store, &ca, &files, crls, serial, reason, audit,
    ))
    .map_err(not_found)
}

fn revoke(a: RevokeArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let serial = serial_arg(&a.serial)?;
    let r = revoke_serial(ctx, &serial, a.reason, "ca.revoke", serde_json::Map::new())?;
    let crl = r.crl.as_ref().map(|p| p.display().to_string());
    if ctx.json {
        return emit_json(&RevokeReport {
            status: if r.changed {
                "revoked"
            } else {
                "already-revoked"
            },
            certificate: &r.record,
            crl_number: r.crl_number,
            crl,
        });
    }
    let c = &r.record;
    emit(&match (r.changed, r.crl_number, &crl) {
        (true, Some(n), Some(crl)) => format!(
            "revoked {} ({}/{}, {}); CRL {n} written to {crl}\n",
            c.serial, c.space, c.user, a.reason
        ),
        (true, _, _) => format!(
            "revoked {} ({}/{}, {}) in AWS Private CA {}; it publishes the revocation in its own CRL\n",
            c.serial, c.space, c.user, a.reason, r.signer
        ),
        (false, _, _) => format!(
            "{} was already revoked at {}; nothing changed\n",
            c.serial,
            c.revoked_at
                .map_or_else(|| "?".to_owned(), eos_store::format_rfc3339)
        ),
    })
}

fn crl(a: OutArgs, ctx: &crate::Ctx, files: &CaFiles, conf: &CaSection) -> anyhow::Result<()> {
    let ca = load_ca(files, conf)?;
    let crls = crl_policy(ctx)?;
    let mut store = ctx.store()?;
    let c = eos_ops::ca::issue_crl(&mut store, &ca, files, crls, a.out.as_deref())?;
    if ctx.json {
        return emit_json(&serde_json::json!({
            "crl_number": c.crl_number, "crl": c.crl.display().to_string(), "pem": c.pem,
        }));
    }
    emit(&c.pem)
}

/// For `sync --watch`: issue the next CRL (queued for the certificate gate)
/// once the latest has less than half its validity left. The number
/// issued, or `None` when the latest is fresh or the CA is not local (AWS
/// Private CA publishes its own CRL).
pub(crate) fn refresh_crl(ctx: &crate::Ctx) -> anyhow::Result<Option<u64>> {
    let conf = &ctx.config.ca;
    if conf.backend != CaBackendKind::Local {
        return Ok(None);
    }
    let crls = crl_policy(ctx)?;
    let mut store = ctx.store()?;
    if !eos_ops::ca::crl_due(store.conn(), crls)? {
        return Ok(None);
    }
    let files = CaFiles::new(&ctx.state_dir);
    let ca = load_ca(&files, conf)?;
    let c = eos_ops::ca::issue_crl(&mut store, &ca, &files, crls, None)?;
    Ok(Some(c.crl_number))
}

/// The configured CA's subject and trust bundle (PEM): the local root, or
/// the Private CA's certificate and chain (`ca bundle`, `gate publish`).
pub(crate) fn trust_bundle(ctx: &crate::Ctx) -> anyhow::Result<(String, String)> {
    let files = CaFiles::new(&ctx.state_dir);
    let ca = match ctx.config.ca.backend {
        CaBackendKind::Local => Ca::Local(Box::new(load_ca(&files, &ctx.config.ca)?)),
        CaBackendKind::Acmpca => {
            let rt = super::plan::runtime()?;
            Ca::Private(Box::new(rt.block_on(connect_private(ctx))?))
        }
    };
    Ok(ca.trust_bundle()?)
}

fn bundle(a: OutArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let (subject, pem) = trust_bundle(ctx)?;
    if let Some(out) = &a.out {
        eos_ops::ca::write_pem(out, &pem)?;
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
    let store = ctx.store()?;
    let records = inventory::expiring(store.conn(), within, SystemTime::now())?;
    if ctx.json {
        return emit_json(&records);
    }
    emit(&expiring_table(&records))
}
