//! `eos-sec drill revocation`: prove that a revoked certificate is refused
//! by a gate, and how fast.
//!
//! 1. Drill certificates left active by a drill that died (kill -9, a
//!    crash) are revoked first.
//! 2. A throwaway key (in memory only) and a short-lived certificate for
//!    the drill identity in the target's space, issued by the configured
//!    CA; the certificate is marked as a drill in the inventory
//!    (`eos_store::drills`) in the transaction that records it, and
//!    audited as `drill.issue`.
//! 3. The target must admit it (2xx/3xx); otherwise the drill proves
//!    nothing and stops (exit 4).
//! 4. Revoke it (`drill.revoke`: the local CA writes a new CRL), publish the
//!    revocation to the `[gate]` targets when one is configured (the path
//!    `sync` takes), and probe the target with a new handshake every
//!    interval until it refuses (HTTP 401/403 or a TLS alert): the time to
//!    refuse, against the SLA (exit 3 when missed).
//!
//! Whatever happens after issuance — an error, SIGINT or SIGTERM — the
//! certificate is revoked before the command returns. Against kill -9 the
//! bounds are the lifetime (`--lifetime`, minutes), the key that died with
//! the process, and step 1 of the next drill.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_authz::probe::{DrillKey, Outcome, Prober, Refusal, Target};
use eos_ca::{Account, Profile, RevocationReason};
use eos_identity::{SpaceId, UserId};
use eos_ops::issuance::{IssueAudit, IssueInput, issue_in};
use serde::Serialize;
use tokio::sync::watch;

use crate::cmd::aws::AwsArgs;
use crate::exit::{Failed, bad_input};
use crate::output::{emit, emit_json};

/// Drills that prove the gates work.
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Issue a throwaway certificate, check the target admits it, revoke
    /// it and time how long until the target refuses it. Exit codes: 0
    /// refused within the SLA, 1 the drill could not run (or was
    /// interrupted), 2 bad input, 3 SLA missed, 4 the target did not admit
    /// the drill certificate
    Revocation(RevocationArgs),
}

/// Arguments of `drill revocation`.
#[derive(Debug, Args)]
pub struct RevocationArgs {
    /// The gate: an https:// URL that admits a certificate of --space
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// The drill identity's space (the target's space)
    #[arg(long)]
    pub space: SpaceId,
    /// The drill identity's user
    #[arg(long, default_value = "eos-drill")]
    pub user: UserId,
    /// CA certificates (PEM) the target's server certificate must chain
    /// to; there is no way to skip this check
    #[arg(long, value_name = "FILE")]
    pub ca_file: PathBuf,
    /// Connect to this address instead of resolving the target's host
    /// (the URL's host is still sent as SNI and Host, and verified)
    #[arg(long, value_name = "ADDR:PORT")]
    pub connect: Option<SocketAddr>,
    /// Time allowed from the revocation to the first refusal
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub sla: String,
    /// The drill certificate's lifetime, at least the SLA plus 1m: how long
    /// it could stay valid if the drill were killed before revoking it
    /// [default: the SLA plus 5m]
    #[arg(long, value_name = "DURATION")]
    pub lifetime: Option<String>,
    /// Time between probes
    #[arg(long, default_value = "250ms", value_name = "DURATION")]
    pub interval: String,
    /// Time allowed for each phase of a probe (name resolution, connect,
    /// TLS handshake, request, answer)
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub timeout: String,
}

pub fn run(cmd: DrillCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        DrillCommand::Revocation(a) => revocation(a, ctx),
    }
}

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    /// Refused within the SLA.
    Passed,
    /// Not refused within the SLA.
    SlaMissed,
    /// The target refused the certificate before it was revoked.
    NotAdmitted,
    /// The target could not be asked (unreachable, timeouts, 5xx).
    Unreachable,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::SlaMissed => "sla-missed",
            Status::NotAdmitted => "not-admitted",
            Status::Unreachable => "unreachable",
            Status::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    status: Status,
    target: String,
    space: String,
    user: String,
    serial: String,
    not_after: String,
    /// Drill certificates of earlier drills revoked first.
    leftovers_revoked: Vec<String>,
    /// The admission probe.
    admitted: Option<Outcome>,
    /// Whether the certificate is revoked now (always, unless revoking it
    /// failed — then the command fails too).
    revoked: bool,
    crl_number: Option<u64>,
    /// Where the revocation was published.
    published: Published,
    /// The SLA, as given.
    sla: String,
    sla_ms: u128,
    /// From the revocation to the first refusal.
    time_to_refuse_ms: Option<u128>,
    refused_by: Option<Refusal>,
    probes: u32,
    /// Probes that neither admitted nor refused (the last one's error).
    probe_failures: u32,
    last_probe_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "to", rename_all = "kebab-case")]
enum Published {
    /// Not revoked (yet).
    Nothing,
    /// The local CRL file (the decision service reloads it).
    LocalCrl { crl: Option<String> },
    /// AWS Private CA publishes its own CRL.
    PrivateCa { signer: String },
    /// Also delivered to the `[gate]` targets and read back.
    Gate {
        crl: Option<String>,
        targets: usize,
        lag_ms: i64,
    },
    /// Delivering to the `[gate]` targets failed.
    GateFailed { crl: Option<String>, error: String },
}

#[allow(clippy::print_stderr)]
fn progress(msg: &str) {
    // Progress goes to stderr, so a caller (or a test) can see how far a
    // drill came; the report goes to stdout at the end.
    eprintln!("drill: {msg}");
}

fn revocation(a: RevocationArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let target = Target::parse(&a.target)?;
    let duration =
        |s: &str, what: &str| eos_codes::duration::parse(s).map_err(|e| bad_input!("{what}: {e}"));
    let sla = duration(&a.sla, "--sla")?;
    let timeout = duration(&a.timeout, "--timeout")?;
    let interval = duration(&a.interval, "--interval")?;
    if sla.is_zero() || timeout.is_zero() || interval.is_zero() {
        return Err(bad_input!(
            "--sla, --timeout and --interval must be more than zero"
        ));
    }
    let lifetime = match &a.lifetime {
        Some(l) => {
            eos_codes::duration::parse_seconds(l).map_err(|e| bad_input!("--lifetime: {e}"))?
        }
        None => Duration::from_secs(sla.as_secs() + 300),
    };
    // A certificate that expires while the drill still probes would be
    // refused for its expiry, and the drill would measure the wrong thing.
    if lifetime < sla + Duration::from_secs(60) {
        return Err(bad_input!(
            "--lifetime {} must be at least --sla {} plus 1m: the drill certificate must outlive the drill",
            eos_ca::format_duration(lifetime),
            eos_ca::format_duration(sla)
        ));
    }
    let ca_pem = std::fs::read(&a.ca_file)
        .map_err(|e| bad_input!("--ca-file {}: cannot read: {e}", a.ca_file.display()))?;
    Prober::new(&ca_pem, None, timeout)
        .with_context(|| format!("--ca-file {}", a.ca_file.display()))?;

    // One worker runs the signal watcher while the main thread works.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (stop_tx, stop) = watch::channel(false);
    rt.spawn(async move {
        let (trigger, shutdown) = eos_register::shutdown_pair();
        trigger.on_signals();
        shutdown.wait().await;
        let _ = stop_tx.send(true);
    });

    let leftovers = revoke_leftovers(ctx)?;
    let drill = issue(ctx, &rt, &a, &target, lifetime)?;
    progress(&format!(
        "issued {} for {}/{} (valid until {})",
        drill.serial, a.space, a.user, drill.not_after
    ));
    let mut report = Report {
        status: Status::Interrupted,
        target: target.url.clone(),
        space: a.space.to_string(),
        user: a.user.to_string(),
        serial: drill.serial.clone(),
        not_after: drill.not_after.clone(),
        leftovers_revoked: leftovers,
        admitted: None,
        revoked: false,
        crl_number: None,
        published: Published::Nothing,
        sla: eos_ca::format_duration(sla),
        sla_ms: sla.as_millis(),
        time_to_refuse_ms: None,
        refused_by: None,
        probes: 0,
        probe_failures: 0,
        last_probe_error: None,
    };
    let run = Run {
        prober: drill.key.client(&drill.pem, &ca_pem, timeout)?,
        target: &target,
        connect: a.connect,
        interval,
        sla,
        stop,
    };
    let outcome = drive(ctx, &rt, &run, &drill, &mut report);
    // Whatever happened, the certificate does not stay valid.
    let cleanup = if report.revoked {
        Ok(())
    } else {
        revoke(ctx, &drill, &mut report).map(|_| ())
    };
    let outcome = match (outcome, cleanup) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) => Err(e),
        (Ok(()), Err(c)) => Err(c),
        (Err(e), Err(c)) => Err(c.context(format!("{e:#}"))),
    };
    let outcome = outcome.and_then(|()| finish(ctx, &drill, &report));
    if let Err(e) = outcome {
        return Err(e.context(if report.revoked {
            format!("drill certificate {} is revoked", drill.serial)
        } else {
            format!(
                "drill certificate {} could NOT be revoked: revoke it with `eos-sec ca revoke {}` (it expires at {})",
                drill.serial, drill.serial, drill.not_after
            )
        }));
    }
    if ctx.json {
        emit_json(&report)?;
    } else {
        emit(&render(&report))?;
    }
    let failed = |code, message: String| Err(anyhow::Error::new(Failed { code, message }));
    match report.status {
        Status::Passed => Ok(()),
        Status::SlaMissed => failed(
            3,
            format!(
                "drill failed: {} did not refuse the revoked certificate within {}",
                report.target,
                eos_ca::format_duration(sla)
            ),
        ),
        Status::NotAdmitted => failed(
            4,
            format!(
                "drill inconclusive: {} refused the drill certificate before it was revoked; check --space and the target's mode",
                report.target
            ),
        ),
        Status::Unreachable => failed(
            1,
            format!(
                "drill could not run: {}: {}",
                report.target,
                report.last_probe_error.as_deref().unwrap_or("no answer")
            ),
        ),
        Status::Interrupted => failed(1, "drill interrupted".to_owned()),
    }
}

/// The drill's certificate and key.
struct Drill {
    id: i64,
    serial: String,
    pem: String,
    not_after: String,
    key: DrillKey,
}

/// What the probing phases need.
struct Run<'a> {
    prober: Prober,
    target: &'a Target,
    connect: Option<SocketAddr>,
    interval: Duration,
    sla: Duration,
    stop: watch::Receiver<bool>,
}

impl Run<'_> {
    /// One probe, or `None` when the drill is interrupted.
    async fn probe(&self) -> Option<Outcome> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return None;
        }
        tokio::select! {
            o = self.prober.probe(self.target, self.connect) => Some(o),
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    /// Sleep `d`, or `false` when interrupted.
    async fn pause(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => !*self.stop.borrow(),
            _ = stop.wait_for(|s| *s) => false,
        }
    }
}

fn revoke_leftovers(ctx: &crate::Ctx) -> anyhow::Result<Vec<String>> {
    let store = ctx.store()?;
    let leftovers = eos_store::drills::live_leftovers(store.conn())?;
    drop(store);
    let mut revoked = Vec::new();
    for c in leftovers {
        let serial =
            eos_ca::Serial::from_hex(&c.serial).map_err(|e| anyhow::anyhow!("drill table: {e}"))?;
        super::ca::revoke_serial(
            ctx,
            &serial,
            RevocationReason::CessationOfOperation,
            "drill.revoke-leftover",
            serde_json::Map::from_iter([("drill".to_owned(), serde_json::json!(true))]),
        )
        .with_context(|| {
            format!(
                "revoking drill certificate {} left by an earlier drill",
                c.serial
            )
        })?;
        progress(&format!(
            "revoked {} left active by an earlier drill",
            c.serial
        ));
        revoked.push(c.serial);
    }
    Ok(revoked)
}

fn issue(
    ctx: &crate::Ctx,
    rt: &tokio::runtime::Runtime,
    a: &RevocationArgs,
    target: &Target,
    lifetime: Duration,
) -> anyhow::Result<Drill> {
    let key = DrillKey::generate()?;
    let csr = key.csr_pem()?;
    let ca = super::ca::issuing_setup(ctx, rt)?;
    let account = Account {
        space: a.space.clone(),
        user: a.user.clone(),
    };
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let actor = super::actor();
    let extra = serde_json::Map::from_iter([
        ("drill".to_owned(), serde_json::json!(true)),
        ("target".to_owned(), serde_json::json!(target.url)),
    ]);
    let issued = rt
        .block_on(issue_in(
            &tx,
            &ca,
            &IssueInput {
                csr: csr.as_bytes(),
                account: &account,
                profile: Profile::Service,
                lifetime: Some(lifetime),
            },
            &IssueAudit {
                actor: &actor,
                action: "drill.issue",
                extra,
            },
            SystemTime::now(),
        ))
        .context("issuing the drill certificate")?;
    let serial = issued.serial.to_string();
    let id = eos_store::drills::record_in(&tx, &serial, &target.url)?;
    tx.commit()?;
    Ok(Drill {
        id,
        serial,
        pem: issued.pem,
        not_after: issued.not_after,
        key,
    })
}

/// Revoke the drill certificate; returns the moment it was revoked.
fn revoke(ctx: &crate::Ctx, drill: &Drill, report: &mut Report) -> anyhow::Result<Instant> {
    let serial =
        eos_ca::Serial::from_hex(&drill.serial).map_err(|e| anyhow::anyhow!("drill: {e}"))?;
    let r = super::ca::revoke_serial(
        ctx,
        &serial,
        RevocationReason::CessationOfOperation,
        "drill.revoke",
        serde_json::Map::from_iter([
            ("drill".to_owned(), serde_json::json!(drill.id)),
            ("target".to_owned(), serde_json::json!(report.target)),
        ]),
    )
    .context("revoking the drill certificate")?;
    let at = Instant::now();
    report.revoked = true;
    report.crl_number = r.crl_number;
    report.published = match &r.crl {
        Some(crl) => Published::LocalCrl {
            crl: Some(crl.display().to_string()),
        },
        None => Published::PrivateCa { signer: r.signer },
    };
    Ok(at)
}

/// Admission, revocation, publication and probing until refused.
fn drive(
    ctx: &crate::Ctx,
    rt: &tokio::runtime::Runtime,
    run: &Run<'_>,
    drill: &Drill,
    report: &mut Report,
) -> anyhow::Result<()> {
    let Some(first) = rt.block_on(run.probe()) else {
        return Ok(());
    };
    report.probes += 1;
    report.admitted = Some(first.clone());
    match first {
        Outcome::Admitted { status } => {
            progress(&format!("{} admitted it (HTTP {status})", report.target));
        }
        Outcome::Refused { .. } => {
            report.status = Status::NotAdmitted;
            return Ok(());
        }
        Outcome::Failed { phase, error } => {
            report.status = Status::Unreachable;
            report.probe_failures += 1;
            report.last_probe_error = Some(format!("{}: {error}", phase_name(phase)));
            return Ok(());
        }
    }
    let revoked_at = revoke(ctx, drill, report)?;
    progress(&format!("revoked {}", drill.serial));
    if ctx.config.gate.bucket.is_some() {
        let crl = report.crl_number.map(|n| n.to_string());
        report.published = match rt.block_on(publish(ctx)) {
            Ok((targets, lag_ms)) => Published::Gate {
                crl,
                targets,
                lag_ms,
            },
            Err(e) => Published::GateFailed {
                crl,
                error: format!("{e:#}"),
            },
        };
    }
    loop {
        let Some(outcome) = rt.block_on(run.probe()) else {
            return Ok(());
        };
        report.probes += 1;
        match outcome {
            Outcome::Refused { by } => {
                let elapsed = revoked_at.elapsed();
                report.time_to_refuse_ms = Some(elapsed.as_millis());
                report.refused_by = Some(by);
                report.status = if elapsed <= run.sla {
                    Status::Passed
                } else {
                    Status::SlaMissed
                };
                return Ok(());
            }
            Outcome::Admitted { .. } => {}
            Outcome::Failed { phase, error } => {
                report.probe_failures += 1;
                report.last_probe_error = Some(format!("{}: {error}", phase_name(phase)));
            }
        }
        let left = run.sla.saturating_sub(revoked_at.elapsed());
        if left.is_zero() {
            report.status = Status::SlaMissed;
            return Ok(());
        }
        if !rt.block_on(run.pause(run.interval.min(left))) {
            return Ok(());
        }
    }
}

/// Deliver the queued CRL to the `[gate]` targets, as `sync` does.
async fn publish(ctx: &crate::Ctx) -> anyhow::Result<(usize, i64)> {
    let Some(gate) = super::gate::connect_for_sync(ctx, &AwsArgs::default()).await? else {
        return Ok((0, 0));
    };
    let mut store = ctx.store()?;
    let d = super::gate::deliver_pending(ctx, &mut store, &gate).await?;
    Ok(d.map_or((0, 0), |d| (d.targets, d.lag_ms)))
}

fn phase_name(p: eos_authz::probe::Phase) -> &'static str {
    use eos_authz::probe::Phase;
    match p {
        Phase::Resolve => "resolve",
        Phase::Connect => "connect",
        Phase::Handshake => "tls handshake",
        Phase::Request => "request",
        Phase::Answer => "answer",
    }
}

/// Record the drill's end in the inventory and the audit log.
fn finish(ctx: &crate::Ctx, drill: &Drill, report: &Report) -> anyhow::Result<()> {
    let outcome = serde_json::to_value(report)?;
    let mut store = ctx.store()?;
    eos_store::drills::finish(store.conn(), drill.id, &outcome)?;
    let tx = store.transaction()?;
    eos_store::audit_in(
        &tx,
        &eos_store::AuditEntry::new(&super::actor(), "drill.revocation", report.status.as_str())
            .with_detail(serde_json::json!({
                "drill": drill.id,
                "serial": drill.serial,
                "target": report.target,
                "time_to_refuse_ms": report.time_to_refuse_ms,
                "sla_ms": report.sla_ms,
            })),
    )?;
    tx.commit()?;
    Ok(())
}

fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = format!("drill revocation: {}\n", r.status.as_str());
    let _ = writeln!(s, "  target           {}", r.target);
    let _ = writeln!(
        s,
        "  identity         {}/{}, certificate {} (valid until {})",
        r.space, r.user, r.serial, r.not_after
    );
    for l in &r.leftovers_revoked {
        let _ = writeln!(s, "  leftover revoked {l}");
    }
    match &r.admitted {
        Some(Outcome::Admitted { status }) => {
            let _ = writeln!(s, "  admitted         HTTP {status}");
        }
        Some(Outcome::Refused { by }) => {
            let _ = writeln!(s, "  admitted         no: {by} before the revocation");
        }
        Some(Outcome::Failed { .. }) | None => {}
    }
    let published = match &r.published {
        Published::Nothing => "nothing".to_owned(),
        Published::LocalCrl { crl } => {
            format!("local CRL {}", crl.as_deref().unwrap_or("-"))
        }
        Published::PrivateCa { signer } => format!("by AWS Private CA {signer}"),
        Published::Gate {
            targets, lag_ms, ..
        } => {
            format!("local CRL and {targets} [gate] targets (read back after {lag_ms} ms)")
        }
        Published::GateFailed { error, .. } => format!("local CRL; [gate] FAILED: {error}"),
    };
    let _ = writeln!(
        s,
        "  revoked          {}{}; published to {published}",
        if r.revoked { "yes" } else { "no" },
        r.crl_number
            .map(|n| format!(" (CRL {n})"))
            .unwrap_or_default()
    );
    match (&r.time_to_refuse_ms, &r.refused_by) {
        (Some(ms), Some(by)) => {
            let _ = writeln!(s, "  refused after    {ms} ms ({by}); SLA {}", r.sla);
        }
        _ if r.revoked => {
            let _ = writeln!(s, "  refused after    not within the SLA {}", r.sla);
        }
        _ => {}
    }
    let _ = writeln!(
        s,
        "  probes           {} ({} neither admitted nor refused{})",
        r.probes,
        r.probe_failures,
        r.last_probe_error
            .as_ref()
            .map(|e| format!("; last: {e}"))
            .unwrap_or_default()
    );
    s
}
