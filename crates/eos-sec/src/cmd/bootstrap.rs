//! `eos-sec bootstrap`: the operator's first job in one command. Scan the
//! usage logs, import the declared rules, compute the desired sets, plan
//! against the configured backend, stage the sets (created or updated,
//! referenced by no rule), and report what was staged and why — and what the
//! evidence does not cover.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use eos_identity::SpaceId;
use eos_logs::ScanReport;
use eos_ops::bootstrap::{BootstrapInput, bootstrap};
use eos_plan::{AppliedSet, Plan, SpaceCoverage};
use eos_store::rules::ImportCounts;
use serde::Serialize;

use crate::cmd::actor;
use crate::cmd::aws::{AwsArgs, aws_options};
use crate::cmd::plan::{BackendArgs, open_backend, plan_options, render_plan, runtime};
use crate::cmd::rules::read_rules_file;
use crate::cmd::scan::ScanFlags;
use crate::output::{emit, emit_json, paint, use_colour};

/// Arguments of `bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Logs: files, directories, globs (gzip detected), `-` for stdin, or
    /// `cloudwatch://LOG-GROUP`
    #[arg(long = "logs", value_name = "SOURCE", required = true, num_args = 1..)]
    pub logs: Vec<String>,
    /// Declared Network Access Rules to import first (TOML, JSON or CSV;
    /// see docs/RULES.md)
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Only these spaces [default: every space in the logs and rules]
    #[arg(long)]
    pub space: Vec<SpaceId>,
    /// Allow staging a change that removes more than `[plan]
    /// max_removal_percent` of an existing staged set
    #[arg(long)]
    pub allow_large_change: bool,
    #[command(flatten)]
    pub scan: ScanFlags,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// How many not-admitted addresses the human report lists per space.
const SHOW_NOT_ADMITTED: usize = 5;

/// The machine-readable result.
#[derive(Debug, Serialize)]
struct Report<'a> {
    backend: &'a str,
    plan_id: i64,
    scan: ScanSummary<'a>,
    rules_imported: Option<&'a ImportCounts>,
    staged: &'a [AppliedSet],
    coverage: &'a [SpaceCoverage],
    warnings: &'a [eos_plan::Finding],
}

#[derive(Debug, Serialize)]
struct ScanSummary<'a> {
    format: &'static str,
    #[serde(flatten)]
    stats: &'a eos_logs::ScanStats,
    unusable_share: f64,
    observations: usize,
}

/// The backend flags for the IPSet backend. With the local backend,
/// `--endpoint-url` and `--region` can only have been meant for the
/// CloudWatch sources (which take them above); without one, they are refused
/// by `open_backend` as for every other command.
fn backend_args(args: &BootstrapArgs, ctx: &crate::Ctx) -> BackendArgs {
    let cloudwatch = args
        .logs
        .iter()
        .any(|s| s.starts_with(crate::cmd::scan::CLOUDWATCH));
    if cloudwatch && ctx.config.backend.kind == crate::config::BackendKind::Local {
        BackendArgs {
            endpoint_url: None,
            region: None,
            ..args.backend.clone()
        }
    } else {
        args.backend.clone()
    }
}

pub fn run(args: BootstrapArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    // Everything that can be bad input is checked before anything is
    // written; `eos_ops::bootstrap` then commits all of the input or none.
    let plan_opts = plan_options(ctx)?;
    let scan_opts = args.scan.options(ctx)?;
    let rules = match &args.rules {
        Some(path) => read_rules_file(path, None)?,
        None => Vec::new(),
    };
    // CloudWatch sources are reached like the backend: its flags, else `[backend]`.
    let aws = aws_options(
        &AwsArgs {
            region: args.backend.region.clone(),
            profile: None,
            endpoint_url: args.backend.endpoint_url.clone(),
        },
        &ctx.config.backend,
    );
    let report = args.scan.read(&args.logs, &scan_opts, &aws, None)?;
    let observations: Vec<_> = report
        .observations
        .iter()
        .filter(|o| args.space.is_empty() || args.space.contains(&o.space))
        .cloned()
        .collect();
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &backend_args(&args, ctx)))?;
    let actor = actor();
    let input = BootstrapInput {
        rules: &rules,
        observations: &observations,
        spaces: &args.space,
        opts: &plan_opts,
        allow_large_change: args.allow_large_change,
        actor: &actor,
    };
    let done = rt
        .block_on(bootstrap(&mut store, &backend, &input))
        .map_err(anyhow::Error::from)?;
    let (plan, staged, coverage) = (&done.plan, &done.staged, &done.coverage);
    let imported = args.rules.as_ref().map(|_| done.imported);
    if ctx.json {
        return emit_json(&Report {
            backend: plan.backend(),
            plan_id: done.plan_id,
            scan: ScanSummary {
                format: report.format.as_str(),
                stats: &report.stats,
                unusable_share: report.stats.unusable_share(),
                observations: observations.len(),
            },
            rules_imported: imported.as_ref(),
            staged,
            coverage,
            warnings: plan.warnings(),
        });
    }
    let colour = use_colour();
    let mut text = String::new();
    render_scan(&mut text, &report, observations.len());
    if let (Some(c), Some(path)) = (&imported, &args.rules) {
        let _ = writeln!(
            text,
            "Rules: {} from {} ({} added, {} updated, {} unchanged)",
            c.added + c.updated + c.unchanged,
            path.display(),
            c.added,
            c.updated,
            c.unchanged
        );
    }
    text.push('\n');
    text.push_str(&render_plan(plan, colour));
    text.push('\n');
    render_staged(&mut text, plan, staged);
    render_coverage(&mut text, coverage, colour);
    text.push_str(
        "Review with `eos-sec plan`; the sets protect nothing until `eos-sec enforce` references them.\n",
    );
    emit(&text)
}

fn render_scan(out: &mut String, r: &ScanReport, observations: usize) {
    let s = &r.stats;
    let _ = writeln!(
        out,
        "Scanned {} input(s), {} lines ({} format): {} records, {} evidence requests, {} outside the window.",
        s.inputs, s.lines, r.format, s.records, s.evidence, s.outside_window
    );
    let _ = writeln!(
        out,
        "Observed {observations} (space, address) pairs with evidence; {} seen without evidence.",
        r.pairs_without_evidence
    );
    let bad = s.bad.total();
    if bad > 0 {
        let reasons: Vec<String> = s
            .bad
            .by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "Unusable lines: {bad} ({:.2}% of the input): {}",
            s.unusable_share() * 100.0,
            reasons.join(", ")
        );
        for b in &s.bad.examples {
            let _ = writeln!(out, "  {b}");
        }
    }
}

fn render_staged(out: &mut String, plan: &Plan, staged: &[AppliedSet]) {
    if staged.is_empty() {
        return;
    }
    let _ = writeln!(out, "Staged on {} (referenced by no rule):", plan.backend());
    for s in staged {
        let _ = writeln!(
            out,
            "  {:<24} {:<9} {} entries (+{} -{})",
            s.name.to_string(),
            s.outcome,
            s.entries.len(),
            s.added.len(),
            s.removed.len()
        );
    }
    out.push('\n');
}

fn render_coverage(out: &mut String, coverage: &[SpaceCoverage], colour: bool) {
    if coverage.is_empty() {
        return;
    }
    out.push_str("What the staged sets would have admitted over the window:\n");
    for c in coverage {
        #[allow(clippy::cast_precision_loss)]
        let share = if c.requests_total == 0 {
            0.0
        } else {
            c.requests_admitted as f64 * 100.0 / c.requests_total as f64
        };
        let _ = writeln!(
            out,
            "  {}: {} of {} evidence requests ({share:.1}%), {} of {} observed addresses, {} active rule(s)",
            c.space,
            c.requests_admitted,
            c.requests_total,
            c.addresses_passing,
            c.observed_addresses,
            c.active_rules
        );
        if !c.users_admitted.is_empty() {
            let users: Vec<&str> = c.users_admitted.iter().map(|u| u.as_str()).collect();
            let _ = writeln!(out, "    users admitted: {}", users.join(", "));
        }
        for (ip, requests) in c.not_admitted.iter().take(SHOW_NOT_ADMITTED) {
            let _ = writeln!(
                out,
                "    {} {ip}: {requests} requests, below the evidence thresholds and covered by no rule",
                paint(colour, "33", "not admitted")
            );
        }
        if c.not_admitted.len() > SHOW_NOT_ADMITTED {
            let _ = writeln!(
                out,
                "    ... and {} more not admitted (see --json)",
                c.not_admitted.len() - SHOW_NOT_ADMITTED
            );
        }
        for r in &c.rules_never_seen {
            let _ = writeln!(out, "    declared {r}: never seen in the logs");
        }
        if c.expired_rules > 0 {
            let _ = writeln!(out, "    {} expired rule(s) left out", c.expired_rules);
        }
        if c.too_little_traffic {
            let _ = writeln!(
                out,
                "    {}: too little traffic to trust the evidence (below `[plan] min_space_requests`); review by hand",
                paint(colour, "31", "warning")
            );
        }
    }
    out.push('\n');
}
