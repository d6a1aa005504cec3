//! `eos-sec code ...`: issue, list, revoke and verify security codes, and
//! rotate the pepper. The code itself is printed once, by `issue`, and
//! nowhere else: lists, errors and the audit log carry the code id only.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_codes::{
    Attempt, CheckError, CodeId, CodeInfo, CodeUse, IssueRequest, Pepper, PepperId, PepperRing,
    PepperSources, Purpose, Purposes, SecurityCode, parse_duration, unix_now,
};
use eos_identity::{Role, SpaceId, UserId};
use eos_store::codes::{CodeFilter, PepperUsage, code_info, list_codes, pepper_usage};
use eos_store::{AuditEntry, audit_in};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::config::CodesSection;
use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// Security codes for the open registration zone.
#[derive(Debug, Subcommand)]
pub enum CodeCommand {
    /// Issue a code and print it once, on a line of its own (details go to
    /// stderr). Only its keyed hash is stored: it cannot be shown again.
    Issue(IssueArgs),
    /// List codes (metadata only: never a code or hash). Live codes only
    /// unless --all.
    List(ListArgs),
    /// Revoke one code by its id, or every live code under a pepper.
    Revoke(RevokeArgs),
    /// Check a code read from standard input, through the same path (and
    /// backoff) as the registration service. Does not spend it unless
    /// --spend.
    Verify(VerifyArgs),
    /// Generate a new pepper into a new 0600 file and explain how to switch
    /// to it while live codes keep working.
    RotatePepper(RotatePepperArgs),
}

/// Arguments of `code issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Space the code opens
    #[arg(long)]
    pub space: String,
    /// User (or administrator) the code is for
    #[arg(long)]
    pub user: String,
    /// Their role in the space: admin, user or service
    #[arg(long, default_value = "user")]
    pub role: String,
    /// Purposes, comma-separated or repeated: register-ip, register-cert,
    /// recover [required unless --recovery, which means `recover`]
    #[arg(long, value_delimiter = ',')]
    pub purpose: Vec<String>,
    /// Lifetime, e.g. 14d, 12h, 30m [default: `[codes] default_ttl`, 14d;
    /// with --recovery `[codes] recovery_ttl`, 365d]
    #[arg(long)]
    pub ttl: Option<String>,
    /// Uses allowed per purpose [default: 1; --recovery: unlimited]
    #[arg(long, conflicts_with = "recovery")]
    pub max_uses: Option<u32>,
    /// An administrator's separate, reusable recovery code (purpose
    /// `recover`; every use is audited)
    #[arg(long)]
    pub recovery: bool,
}

/// Arguments of `code list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this space
    #[arg(long)]
    pub space: Option<String>,
    /// Include expired, spent and revoked codes
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `code revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The code id (the 9 symbols after `EOS-` as `code list` shows them)
    #[arg(required_unless_present = "pepper", conflicts_with = "pepper")]
    pub code_id: Option<String>,
    /// Revoke every live code whose hash was made with this pepper id (to
    /// retire a leaked pepper at once; reissue those codes afterwards)
    #[arg(long)]
    pub pepper: Option<String>,
    /// Why, for the audit log
    #[arg(long, default_value = "revoked by operator")]
    pub reason: String,
}

/// Arguments of `code verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The purpose to check the code for: register-ip, register-cert, recover
    #[arg(long)]
    pub purpose: String,
    /// Refuse the code unless it is for this space
    #[arg(long)]
    pub space: Option<String>,
    /// Source address the attempt is counted against for backoff
    #[arg(long, default_value = "127.0.0.1")]
    pub source: IpAddr,
    /// Spend one use of the purpose, as the registration service would
    #[arg(long)]
    pub spend: bool,
}

/// Arguments of `code rotate-pepper`.
#[derive(Debug, Args)]
pub struct RotatePepperArgs {
    /// Where to write the new pepper (hex, mode 0600); must not exist
    #[arg(long)]
    pub new_pepper_file: PathBuf,
}

pub fn run(cmd: CodeCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let cfg = &ctx.config.codes;
    match cmd {
        CodeCommand::Issue(a) => issue(a, cfg, ctx),
        CodeCommand::List(a) => list(a, ctx),
        CodeCommand::Revoke(a) => revoke(a, cfg, ctx),
        CodeCommand::Verify(a) => verify(a, cfg, ctx),
        CodeCommand::RotatePepper(a) => rotate_pepper(a, cfg, ctx),
    }
}

/// Every configured pepper, or a refusal (exit 2): fail closed.
pub(crate) fn load_ring(cfg: &CodesSection) -> anyhow::Result<PepperRing> {
    let sources =
        PepperSources::from_env(cfg.pepper_file.clone(), cfg.previous_pepper_files.clone());
    Ok(PepperRing::load(&sources)?)
}

fn parse_space(s: &str) -> anyhow::Result<SpaceId> {
    SpaceId::new(s).map_err(|e| bad_input!("--space: {e}"))
}

fn ttl_arg(given: Option<&str>, default: &str, what: &str) -> anyhow::Result<std::time::Duration> {
    let text = given.unwrap_or(default);
    parse_duration(text).map_err(|e| bad_input!("{what}: {e}"))
}

#[derive(Serialize)]
struct Issued<'a> {
    /// The code: here once, never again.
    code: &'a str,
    #[serde(flatten)]
    info: &'a CodeInfo,
}

/// A refused issue request, with its stable code (exit 2).
fn not_issued(e: eos_codes::BindingError) -> anyhow::Error {
    let code = e.code();
    anyhow::Error::new(e).context(format!("code not issued [{code}]"))
}

fn issue(a: IssueArgs, cfg: &CodesSection, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let space = parse_space(&a.space)?;
    let user = UserId::new(&a.user).map_err(|e| bad_input!("--user: {e}"))?;
    let role: Role = a.role.parse().map_err(|e| bad_input!("--role: {e}"))?;
    let request = if a.recovery {
        let purposes: Vec<Purpose> = parse_purposes(&a.purpose)?;
        if purposes.iter().any(|p| *p != Purpose::Recover) {
            return Err(bad_input!(
                "--recovery codes have the single purpose `recover`; drop --purpose or issue an onboarding code"
            ));
        }
        let ttl = ttl_arg(a.ttl.as_deref(), &cfg.recovery_ttl, "--ttl")?;
        IssueRequest::recovery(space, user, role)
            .and_then(|r| r.with_ttl(ttl))
            .map_err(not_issued)?
    } else {
        if a.purpose.is_empty() {
            return Err(bad_input!(
                "--purpose is required: register-ip, register-cert and/or recover"
            ));
        }
        let purposes = Purposes::new(parse_purposes(&a.purpose)?).map_err(not_issued)?;
        let ttl = ttl_arg(a.ttl.as_deref(), &cfg.default_ttl, "--ttl")?;
        IssueRequest::onboarding(space, user, role, purposes)
            .and_then(|r| r.with_ttl(ttl))
            .and_then(|r| match a.max_uses {
                Some(n) => r.with_max_uses(Some(n)),
                None => Ok(r),
            })
            .map_err(not_issued)?
    };
    let ring = load_ring(cfg)?;
    let mut store = ctx.store()?;
    let (code, info) = store
        .issue_code(&ring, &request, unix_now(), &super::actor())
        .context("issuing a security code")?;
    let written = code.reveal();
    if ctx.json {
        return emit_json(&Issued {
            code: &written,
            info: &info,
        });
    }
    let uses = info
        .max_uses
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    note(&format!(
        "issued {} code {} for {} ({}) in space {}: {}; uses per purpose: {uses}; expires {}\n\
         hand it over now: only its keyed hash is stored, it cannot be shown again",
        info.kind,
        info.code_id,
        info.user,
        info.role,
        info.space,
        join_purposes(&info.purposes),
        info.expires_at,
    ));
    let mut line = Zeroizing::new(String::with_capacity(written.len() + 1));
    line.push_str(&written);
    line.push('\n');
    emit(&line)
}

fn parse_purposes(list: &[String]) -> anyhow::Result<Vec<Purpose>> {
    list.iter()
        .map(|p| p.trim().parse::<Purpose>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_input!("--purpose: {e}"))
}

fn join_purposes(p: &[Purpose]) -> String {
    p.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

fn list(a: ListArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let filter = CodeFilter {
        space: a.space.as_deref().map(parse_space).transpose()?,
        include_inactive: a.all,
    };
    let store = ctx.store()?;
    let codes = list_codes(store.conn(), &filter, unix_now())?;
    if ctx.json {
        return emit_json(&codes);
    }
    if codes.is_empty() {
        let hint = if a.all {
            ""
        } else {
            " (--all includes expired, spent and revoked codes)"
        };
        return emit(&format!("no codes{hint}\n"));
    }
    let header = [
        "CODE ID", "SPACE", "USER", "ROLE", "KIND", "PURPOSES", "USES", "STATUS", "EXPIRES",
    ];
    let rows: Vec<[String; 9]> = codes
        .iter()
        .map(|c| {
            let max = c.max_uses.map_or_else(|| "∞".to_owned(), |n| n.to_string());
            let uses = c
                .uses
                .iter()
                .map(|u| format!("{}/{max}", u.uses))
                .collect::<Vec<_>>()
                .join(",");
            [
                c.code_id.to_string(),
                c.space.to_string(),
                c.user.to_string(),
                c.role.to_string(),
                c.kind.to_string(),
                join_purposes(&c.purposes),
                uses,
                c.status.as_str().to_owned(),
                c.expires_at.clone(),
            ]
        })
        .collect();
    emit(&table(&header, &rows))
}

/// Left-aligned columns separated by two spaces.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            l.push_str(cell);
            if i + 1 < N {
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[derive(Serialize)]
struct Revoked {
    revoked: Vec<CodeId>,
    already_revoked: Vec<CodeId>,
}

fn revoke(a: RevokeArgs, cfg: &CodesSection, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let by = super::actor();
    let now = unix_now();
    let mut store = ctx.store()?;
    let report = if let Some(pepper) = &a.pepper {
        let id = PepperId::from_stored(pepper.trim())
            .ok_or_else(|| bad_input!("--pepper `{pepper}` is not a pepper id (16 hex digits)"))?;
        // Revoking the current pepper's codes is allowed (it may have
        // leaked), but say so: the operator should rotate first.
        if let Ok(ring) = load_ring(cfg)
            && ring.current().id() == &id
        {
            note(&format!(
                "note: {id} is the current pepper; run `eos-sec code rotate-pepper` so new codes do not use it"
            ));
        }
        let tx = store.transaction()?;
        let revoked = eos_store::codes::revoke_pepper_in(&tx, &id, &by, &a.reason, now)?;
        tx.commit().context("committing the revocation")?;
        Revoked {
            revoked,
            already_revoked: Vec::new(),
        }
    } else {
        let raw = a.code_id.as_deref().unwrap_or_default();
        let id = CodeId::parse(raw).map_err(|e| bad_input!("code id: {e}"))?;
        let Some(info) = code_info(store.conn(), &id, now)? else {
            return Err(bad_input!(
                "no code with id {id} (see `eos-sec code list --all`)"
            ));
        };
        if store.revoke_code(&id, &by, &a.reason, now)? {
            Revoked {
                revoked: vec![info.code_id],
                already_revoked: Vec::new(),
            }
        } else {
            Revoked {
                revoked: Vec::new(),
                already_revoked: vec![info.code_id],
            }
        }
    };
    if ctx.json {
        return emit_json(&report);
    }
    let mut out = String::new();
    for id in &report.revoked {
        out.push_str(&format!("revoked {id}\n"));
    }
    for id in &report.already_revoked {
        out.push_str(&format!("{id} was already revoked\n"));
    }
    if out.is_empty() {
        out.push_str("no live codes under that pepper\n");
    }
    emit(&out)
}

/// Longest input `code verify` reads: a code is 48 characters.
const MAX_VERIFY_INPUT: u64 = 1024;

#[derive(Serialize)]
struct Verified<'a> {
    accepted: bool,
    spent: bool,
    #[serde(flatten)]
    usage: &'a CodeUse,
}

fn verify(a: VerifyArgs, cfg: &CodesSection, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let purpose: Purpose = a
        .purpose
        .parse()
        .map_err(|e| bad_input!("--purpose: {e}"))?;
    let space = a.space.as_deref().map(parse_space).transpose()?;
    let ring = load_ring(cfg)?;
    let policy = cfg.backoff()?;
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(MAX_VERIFY_INPUT)
        .read_to_string(&mut input)
        .map_err(|e| bad_input!("reading the code from standard input: {e}"))?;
    // A typo is the operator's to fix, not an attempt: say where it is (the
    // check symbol catches every changed symbol and every swap of
    // neighbours) and count nothing, as the page does before it sends.
    SecurityCode::parse(input.trim())
        .context("the code read from standard input (nothing was checked or counted)")?;
    let attempt = Attempt {
        presented: input.trim(),
        purpose,
        source: a.source,
        space: space.as_ref(),
    };
    let mut store = ctx.store()?;
    let now = unix_now();
    let result = if a.spend {
        store
            .spend_code(&ring, &policy, &attempt, now, |_, grant| {
                Ok::<_, std::convert::Infallible>((**grant).clone())
            })
            .map_err(|e| match e {
                eos_store::codes::SpendError::Check(c) => c,
                eos_store::codes::SpendError::Store(s) => CheckError::Store(s),
                other => CheckError::Store(eos_store::StoreError::Corrupt {
                    what: "code spend",
                    detail: other.to_string(),
                }),
            })
    } else {
        store.verify_code(&ring, &policy, &attempt, now)
    };
    let usage = match result {
        Ok(u) => u,
        Err(CheckError::Rejected(r)) => {
            // The operator gets the same answer as anyone; the reason is in
            // the audit log (`eos-sec` never prints it next to a code).
            return Err(anyhow::Error::new(crate::exit::Refused {
                code: eos_register::Code::CodeRejected.as_str(),
                message: format!("{r} (the reason is in the audit log: action code.reject)"),
            }));
        }
        Err(e) => return Err(anyhow::Error::new(e)),
    };
    if ctx.json {
        return emit_json(&Verified {
            accepted: true,
            spent: a.spend,
            usage: &usage,
        });
    }
    let max = usage
        .max_uses
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let spent = if a.spend {
        "spent"
    } else {
        "not spent (--spend spends it)"
    };
    emit(&format!(
        "accepted: {} code {} for {} ({}) in space {}, purpose {}: use {} of {max}, {spent}\n",
        usage.kind,
        usage.code_id,
        usage.user,
        usage.role,
        usage.space,
        usage.purpose,
        usage.use_number,
    ))
}

#[derive(Serialize)]
struct Rotation<'a> {
    new_pepper_id: &'a PepperId,
    new_pepper_file: String,
    current_pepper_id: &'a PepperId,
    live_codes_by_pepper: &'a [PepperUsage],
    steps: Vec<String>,
}

fn rotate_pepper(a: RotatePepperArgs, cfg: &CodesSection, ctx: &crate::Ctx) -> anyhow::Result<()> {
    // The current configuration must load: rotating away from a pepper we
    // cannot read would strand its codes without anyone noticing.
    let ring = load_ring(cfg)?;
    let new = Pepper::generate()?;
    write_new_secret_file(&a.new_pepper_file, &new.reveal_hex())?;
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    audit_in(
        &tx,
        &AuditEntry::new(&super::actor(), "code.pepper.rotate", new.id().as_str()).with_detail(
            serde_json::json!({
                "new_pepper_id": new.id(),
                "new_pepper_file": a.new_pepper_file.display().to_string(),
                "previous_pepper_id": ring.current().id(),
            }),
        ),
    )?;
    tx.commit().context("recording the rotation")?;
    let usage = pepper_usage(store.conn(), unix_now())?;
    let current_file = cfg.pepper_file.as_ref().map_or_else(
        || {
            format!(
                "a 0600 file holding the current {} value",
                eos_codes::PEPPER_ENV
            )
        },
        |p| p.display().to_string(),
    );
    let needed_until = usage
        .iter()
        .filter(|u| &u.pepper_id != new.id())
        .map(|u| u.needed_until.as_str())
        .max()
        .unwrap_or("now (no live codes)");
    let steps = vec![
        format!(
            "in [codes], set pepper_file = \"{}\" (and unset {} if it is set): new codes use the new pepper",
            a.new_pepper_file.display(),
            eos_codes::PEPPER_ENV
        ),
        format!(
            "add {current_file} to [codes] previous_pepper_files: codes issued before now keep working"
        ),
        format!(
            "after {needed_until}, when the last of those codes has expired, remove it from previous_pepper_files and delete it"
        ),
        format!(
            "if the old pepper leaked, do not wait: `eos-sec code revoke --pepper {}` and reissue those codes",
            ring.current().id()
        ),
    ];
    if ctx.json {
        return emit_json(&Rotation {
            new_pepper_id: new.id(),
            new_pepper_file: a.new_pepper_file.display().to_string(),
            current_pepper_id: ring.current().id(),
            live_codes_by_pepper: &usage,
            steps,
        });
    }
    let mut out = format!(
        "wrote new pepper {} to {} (mode 0600)\n\n\
         Existing codes cannot be re-keyed: only their keyed hashes are stored, and a\n\
         hash can only be recomputed from the code itself. Each hash records the id of\n\
         the pepper that made it, so the old pepper stays readable until its codes expire:\n",
        new.id(),
        a.new_pepper_file.display()
    );
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("  {}. {s}\n", i + 1));
    }
    out.push_str("\nlive codes by pepper:\n");
    let rows: Vec<[String; 3]> = usage
        .iter()
        .map(|u| {
            let which = if &u.pepper_id == ring.current().id() {
                " (current)"
            } else if ring.get(&u.pepper_id).is_some() {
                " (previous)"
            } else {
                " (not configured: these codes fail)"
            };
            [
                format!("{}{which}", u.pepper_id),
                u.live_codes.to_string(),
                u.needed_until.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  none\n");
    } else {
        for l in table(&["PEPPER ID", "LIVE CODES", "NEEDED UNTIL"], &rows).lines() {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    emit(&out)
}

/// Write a secret to a new file with mode 0600: a temporary file in the same
/// directory, then a hard link to the final name (which fails if it exists,
/// so nothing is ever overwritten), then the temporary name is removed.
fn write_new_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if path.exists() {
        return Err(bad_input!(
            "{} already exists; choose a new file for the new pepper",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let tmp = dir.join(format!(".eos-sec-pepper.{}.tmp", std::process::id()));
    let mut file = options
        .open(&tmp)
        .map_err(|e| bad_input!("{}: cannot create: {e}", tmp.display()))?;
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| bad_input!("{}: cannot write: {e}", path.display()))
}

#[allow(clippy::print_stderr)]
fn note(s: &str) {
    eprintln!("{s}");
}
