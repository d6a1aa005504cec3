//! `eos-sec sync`: deliver declared rule changes to the IPSets — one pass,
//! or `--watch` until interrupted — and `eos-sec sync status`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_store::sync::status;
use eos_sync::{PassReport, sync_once};

use crate::cmd::plan::{BackendArgs, open_backend, plan_options, render_findings, runtime};
use crate::exit::bad_input;
use crate::output::{emit, emit_json, refusal_document, use_colour, use_colour_on_stderr};

/// Arguments of `sync`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// Keep running: sync whenever rules change or expire, until
    /// interrupted (SIGINT/SIGTERM)
    #[arg(long)]
    pub watch: bool,
    /// Allow this pass to remove more than `[plan] max_removal_percent` of
    /// a set (not with --watch)
    #[arg(long, conflicts_with = "watch")]
    pub allow_large_change: bool,
    /// Least time between two writes, e.g. 250ms, 2m [default: 1s on AWS
    /// (WAF allows about one write per second per account and region), 0
    /// locally]
    #[arg(long, value_parser = eos_codes::duration::parse)]
    pub write_interval: Option<Duration>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `sync status`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Per IPSet: last successful sync, pending changes, lag, last error
    Status(StatusArgs),
}

/// Arguments of `sync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: SyncArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    if let Some(SyncCommand::Status(a)) = args.command {
        return run_status(&a, ctx);
    }
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &args.backend))?;
    let mut opts = eos_ops::sync::options(plan_options(ctx)?, &backend, args.write_interval);
    opts.allow_large_change = args.allow_large_change;
    opts.lease = ctx.config.sync.lease;
    let aws = super::aws::AwsArgs {
        region: args.backend.region.clone(),
        profile: None,
        endpoint_url: args.backend.endpoint_url.clone(),
    };
    let gate = rt.block_on(super::gate::connect_for_sync(ctx, &aws))?;
    if args.watch {
        let ip = eos_ops::sync::watch(store, backend, opts, shutdown_signal());
        return rt
            .block_on(async {
                match gate {
                    // The certificate gate's queue is watched beside the
                    // rules; the watcher ending (a signal) ends both.
                    Some(g) => tokio::select! {
                        r = ip => r.map_err(anyhow::Error::new),
                        r = super::gate::watch_pending(ctx, g) => r,
                    },
                    None => ip.await.map_err(anyhow::Error::new),
                }
            })
            .context("sync --watch stopped");
    }
    // Revocations first: they are the more urgent change.
    let delivered = match &gate {
        Some(g) => rt.block_on(super::gate::deliver_pending(ctx, &mut store, g)),
        None => Ok(None),
    };
    let mut pacer = eos_sync::Pacer::new(opts.write_interval);
    let report = rt.block_on(sync_once(&mut store, &backend, &opts, &mut pacer))?;
    if !report.has_errors() {
        let delivered = delivered?;
        return if ctx.json {
            emit_json(&report)
        } else {
            let mut out = render_pass(&report, use_colour());
            if let Some(d) = delivered {
                let _ = writeln!(
                    out,
                    "certificate gate: CRL {} on {} targets ({} queued delivered, lag {} ms)",
                    d.crl_number
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    d.targets,
                    d.delivered,
                    d.lag_ms
                );
            }
            emit(&out)
        };
    }
    if let Err(e) = &delivered {
        tracing::error!(error = %format!("{e:#}"), "certificate gate: delivery failed");
    }
    // A failed pass: the report is the diagnosis, on stderr; stdout stays
    // empty, except for --json, whose report scripts read: a refused set's
    // findings make it the refusal document, with the report beside them.
    let refusals: Vec<&eos_plan::Finding> = report
        .warnings
        .iter()
        .filter(|f| f.severity == eos_plan::Severity::Refusal)
        .collect();
    if ctx.json {
        let doc = serde_json::to_value(&report)?;
        if refusals.is_empty() {
            emit_json(&doc)?;
        } else {
            let refusals = refusals
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            emit_json(&refusal_document(refusals, Some(doc)))?;
        }
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprint!("{}", render_pass(&report, use_colour_on_stderr()));
        }
    }
    let refused = report.sets.iter().any(|s| s.outcome == "refused");
    let msg = "some changes could not be synced and stay pending (see the report above; `eos-sec sync status`)";
    Err(if refused {
        bad_input!("{msg}")
    } else {
        anyhow::anyhow!(msg)
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The human report of one pass.
pub fn render_pass(r: &PassReport, colour: bool) -> String {
    let mut out = String::new();
    if r.sets.is_empty() && r.delivered == 0 && r.leased_elsewhere.is_empty() {
        out.push_str("Nothing to sync: no pending rule changes or expiries.\n");
        return out;
    }
    for s in &r.sets {
        let _ = write!(out, "{:<24} {:<9}", s.name.to_string(), s.outcome);
        if !s.added.is_empty() || !s.removed.is_empty() {
            let _ = write!(out, " +{} -{}", s.added.len(), s.removed.len());
        }
        if s.writes > 0 {
            let _ = write!(
                out,
                " ({} write{})",
                s.writes,
                if s.writes == 1 { "" } else { "s" }
            );
        }
        match (&s.error, s.outcome) {
            // The refused findings follow in full under "Warnings".
            (Some(codes), "refused") => {
                let _ = write!(out, " [{codes}]");
            }
            (Some(e), _) => {
                let _ = write!(out, ": {e}");
            }
            (None, _) => {}
        }
        out.push('\n');
    }
    for s in &r.leased_elsewhere {
        let _ = writeln!(
            out,
            "{s}: served by another sync worker (its lease; docs/SYNC.md, \"Several workers\")"
        );
    }
    for s in &r.expired_spaces {
        let _ = writeln!(out, "expired rules removed from the sets of {s}");
    }
    for s in &r.removed_but_seen {
        let _ = writeln!(
            out,
            "warning: rule {} of {} was removed, but {} still appear(s) in recent evidence",
            s.cidr,
            s.space,
            s.addresses.join(", ")
        );
    }
    out.push('\n');
    render_findings(&mut out, &r.warnings, colour);
    let _ = writeln!(
        out,
        "Delivered {} change(s) with {} write(s); {} pending.",
        r.delivered,
        r.writes(),
        r.pending
    );
    out
}

fn run_status(a: &StatusArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &a.backend))?;
    let id = eos_plan::IpSetBackend::id(&backend);
    let store = ctx.store()?;
    let rows = status(store.conn(), &id, time::OffsetDateTime::now_utc())?;
    let gate = super::gate::sync_status(&store)?;
    let gate_rows = gate["targets"].as_array().cloned().unwrap_or_default();
    if ctx.json {
        let mut doc = serde_json::json!({ "backend": id, "sets": rows });
        if !gate_rows.is_empty()
            || gate["pending_crls"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        {
            doc["gate"] = gate;
        }
        return emit_json(&doc);
    }
    let mut out = format!("sync status for backend {id}\n\n");
    if !gate_rows.is_empty() {
        let _ = writeln!(
            out,
            "{:<12} {:<32} {:>6} {:>7} {:>7}  last error",
            "GATE", "TARGET", "CRL", "PENDING", "LAG s"
        );
        for g in &gate_rows {
            let _ = writeln!(
                out,
                "{:<12} {:<32} {:>6} {:>7} {:>7}  {}",
                g["kind"].as_str().unwrap_or("?"),
                g["name"].as_str().unwrap_or("?"),
                g["crl_number"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                g["pending_crls"],
                g["lag_s"],
                match (g["last_error"].as_str(), g["last_error_at"].as_str()) {
                    (Some(e), Some(at)) => format!("{at}: {e}"),
                    _ => "-".to_owned(),
                }
            );
        }
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("No IPSet has been synced and no change is pending.\n");
        return emit(&out);
    }
    let _ = writeln!(
        out,
        "{:<24} {:<24} {:>7} {:>10} {:>12} {:>7}  last error",
        "IPSET", "LAST SUCCESS", "PENDING", "LAG ms", "LAST LAG ms", "WRITES"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:>7} {:>10} {:>12} {:>7}  {}",
            r.name,
            r.last_success.as_deref().unwrap_or("never"),
            r.pending,
            r.lag_ms,
            r.last_lag_ms
                .map_or_else(|| "-".to_owned(), |l| l.to_string()),
            r.writes,
            match (&r.last_error, &r.last_error_at) {
                (Some(e), Some(at)) => format!("{at}: {e}"),
                _ => "-".to_owned(),
            }
        );
    }
    emit(&out)
}
