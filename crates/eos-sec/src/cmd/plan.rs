//! `eos-sec plan` and `eos-sec apply`: desired sets vs the backend's IPSets,
//! reviewed like `terraform plan`, applied with WAF's lock-token contract.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use eos_identity::SpaceId;
use eos_ops::plan as ops;
use eos_plan::{
    AppliedSet, CheckedOptions, Finding, Plan, PlanEntry, SavedPlan, SetAction, SetChange, Severity,
};
use eos_store::ipsets::save_plan;

use crate::cmd::actor;
use crate::config::{BackendKind, WafScope};
use crate::exit::bad_input;
use crate::output::{emit, emit_json, paint, use_colour};

/// Where to reach the backend: overrides of the `[backend]` config section.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendArgs {
    /// AWS endpoint override, e.g. a moto server [default: `[backend] endpoint_url`]
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region [default: `[backend] region`, else the AWS configuration]
    #[arg(long)]
    pub region: Option<String>,
    /// WAF scope [default: `[backend] scope`, else REGIONAL]
    #[arg(long, value_enum)]
    pub scope: Option<WafScope>,
}

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only these spaces [default: every space with rules or observations]
    #[arg(long)]
    pub space: Vec<SpaceId>,
    /// Also save the plan to FILE (JSON) for `eos-sec apply FILE`
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Allow a plan that removes more than `[plan] max_removal_percent`
    /// (default 10%) of a set, or empties it
    #[arg(long)]
    pub allow_large_change: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Arguments of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A saved plan (from `plan --out`): applied only if planning now makes
    /// exactly its changes, else refused naming each difference [default:
    /// plan now, show it and ask]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
    /// Only these spaces (without a saved plan) [default: all]
    #[arg(long)]
    pub space: Vec<SpaceId>,
    /// Allow a large change (without a saved plan)
    #[arg(long)]
    pub allow_large_change: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The configured backend: one type for either, chosen at run time.
pub use eos_ops::Backend;

/// A runtime for the backend calls (the local backend never waits; AWS does).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Open the configured backend.
pub async fn open_backend(ctx: &crate::Ctx, args: &BackendArgs) -> anyhow::Result<Backend> {
    let cfg = &ctx.config.backend;
    let aws_flags = args.endpoint_url.is_some() || args.region.is_some() || args.scope.is_some();
    match cfg.kind {
        BackendKind::Local => {
            if aws_flags {
                return Err(bad_input!(
                    "--endpoint-url, --region and --scope apply to the aws backend; set `[backend] kind = \"aws\"` in the config"
                ));
            }
            // The local sets live in the state store, on either engine.
            let location = ctx.store_location()?;
            Ok(Backend::local_at(&location).context("opening the local backend")?)
        }
        BackendKind::Aws => {
            let scope = match args.scope.unwrap_or(cfg.scope) {
                WafScope::Regional => eos_aws::wafv2::Scope::Regional,
                WafScope::Cloudfront => eos_aws::wafv2::Scope::Cloudfront,
            };
            let flags = crate::cmd::aws::AwsArgs {
                region: args.region.clone(),
                profile: None,
                endpoint_url: args.endpoint_url.clone(),
            };
            let opts = crate::cmd::aws::aws_options(&flags, cfg);
            Backend::aws(&opts, scope)
                .await
                .map_err(|e| bad_input!("{e}"))
        }
    }
}

/// The checked `[plan]` options.
pub fn plan_options(ctx: &crate::Ctx) -> anyhow::Result<CheckedOptions> {
    ctx.config
        .plan
        .check()
        .map_err(|e| bad_input!("config [plan]: {e}"))
}

pub fn run_plan(args: PlanArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let opts = plan_options(ctx)?;
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &args.backend))?;
    let plan = rt
        .block_on(ops::plan(
            &mut store,
            &backend,
            &args.space,
            &opts,
            args.allow_large_change,
        ))
        .map_err(anyhow::Error::from)?;
    let json = plan.to_json();
    if let Some(out) = &args.out {
        write_file(out, &format!("{json}\n"))?;
    }
    save_plan(&mut store, plan.backend(), &json, &actor())?;
    if ctx.json {
        return emit(&format!("{json}\n"));
    }
    let mut text = render_plan(&plan, use_colour());
    if let Some(out) = &args.out {
        let _ = writeln!(
            text,
            "\nSaved the plan to {}. Apply exactly it with:\n  eos-sec apply {}",
            out.display(),
            out.display()
        );
    } else if plan.has_changes() {
        text.push_str(
            "\nApply with `eos-sec apply`, or save the plan with --out FILE and apply that file.\n",
        );
    }
    emit(&text)
}

/// Write a file whole or not at all: a temp file beside it, then rename.
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| bad_input!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        bad_input!("{}: cannot write: {e}", path.display())
    })
}

fn mark(on: bool, sym: &str) -> String {
    let code = match sym {
        "+" => "32",
        "-" => "31",
        "~" => "33",
        "!" => "35",
        _ => return sym.to_owned(),
    };
    paint(on, code, sym)
}

fn entry_lines(out: &mut String, colour: bool, sym: &str, e: &PlanEntry, note: &str) {
    let flags = if e.flags.is_empty() {
        String::new()
    } else {
        let f: Vec<&str> = e.flags.iter().map(|f| f.as_str()).collect();
        format!(" [{}]", f.join(", "))
    };
    let first = e
        .sources
        .first()
        .map(|s| s.describe())
        .unwrap_or_else(|| note.to_owned());
    let _ = writeln!(
        out,
        "      {} {:<22}{flags}  {first}",
        mark(colour, sym),
        // ipnet's Display ignores width: pad the canonical text.
        eos_ipset::canonical(&e.cidr)
    );
    for s in e.sources.iter().skip(1) {
        let _ = writeln!(
            out,
            "        {:<22}{}  {}",
            "",
            " ".repeat(flags.len()),
            s.describe()
        );
    }
}

fn render_change(out: &mut String, c: &SetChange, colour: bool) {
    let (sym, what) = match c.action {
        SetAction::Create => ("+", "will be created, staged: referenced by no rule"),
        SetAction::Update => ("~", "will be updated in place"),
        SetAction::NoChange => (" ", "no changes"),
    };
    let _ = writeln!(out, "  {} {} ({what})", mark(colour, sym), c.name);
    for e in &c.add {
        entry_lines(out, colour, "+", e, "");
    }
    for e in &c.remove {
        entry_lines(
            out,
            colour,
            "-",
            e,
            "written by eos-sec; no rule or evidence covers it any more",
        );
    }
    for e in &c.unchanged {
        entry_lines(out, colour, " ", e, "");
    }
    for e in &c.drift {
        entry_lines(
            out,
            colour,
            "!",
            e,
            "drift: eos-sec never wrote it; kept, not removed",
        );
    }
}

/// The human plan, modelled on `terraform plan`.
pub fn render_plan(plan: &Plan, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "eos-sec plan against backend {}\n", plan.backend());
    if plan.changes().is_empty() {
        out.push_str("No rules or evidence in scope: nothing to plan.\n");
        return out;
    }
    out.push_str("Symbols: + add, - remove, ! drift (kept), ~ update in place\n\n");
    for c in plan.changes() {
        render_change(&mut out, c, colour);
        out.push('\n');
    }
    render_findings(&mut out, plan.warnings(), colour);
    let sum = |f: fn(&SetChange) -> usize| plan.changes().iter().map(f).sum::<usize>();
    let creates = plan
        .changes()
        .iter()
        .filter(|c| c.action == SetAction::Create)
        .count();
    let updates = plan
        .changes()
        .iter()
        .filter(|c| c.action == SetAction::Update)
        .count();
    if plan.has_changes() {
        let _ = writeln!(
            out,
            "Plan: {} to add, {} to remove, {} unchanged, {} drift; {creates} IPSet(s) to create, {updates} to update.",
            sum(|c| c.add.len()),
            sum(|c| c.remove.len()),
            sum(|c| c.unchanged.len()),
            sum(|c| c.drift.len()),
        );
    } else {
        let _ = writeln!(
            out,
            "No changes. The IPSets match the rules and evidence ({} drift entries kept).",
            sum(|c| c.drift.len())
        );
    }
    out
}

/// Warnings and refusals, one per line.
pub fn render_findings(out: &mut String, findings: &[Finding], colour: bool) {
    if findings.is_empty() {
        return;
    }
    out.push_str("Warnings:\n");
    for f in findings {
        let code = if f.severity == Severity::Refusal {
            "31"
        } else {
            "33"
        };
        let _ = writeln!(out, "  {}", paint(colour, code, &f.to_string()));
    }
    out.push('\n');
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(bad_input!(
            "apply needs confirmation: run it on a terminal, or pass --yes"
        ));
    }
    #[allow(clippy::print_stderr)]
    {
        eprint!("Apply this plan? Only 'yes' is accepted: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the confirmation")?;
    Ok(line.trim() == "yes")
}

pub fn run_apply(args: ApplyArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let opts = plan_options(ctx)?;
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &args.backend))?;
    // A plan is applied only as planning makes it now: a saved plan, or one
    // the operator took time to confirm, is compared with a plan made from
    // the current rules, evidence and sets, and refused (`plan-stale`,
    // naming every difference) unless both make the same changes.
    let mut replan = |spaces: &[SpaceId], allow_large_change: bool| {
        rt.block_on(ops::replan(
            &mut store,
            &backend,
            spaces,
            &opts,
            allow_large_change,
        ))
        .map_err(anyhow::Error::from)
    };
    let mut shown = String::new();
    let (plan, delivers) = match &args.plan {
        Some(path) => {
            if !args.space.is_empty() || args.allow_large_change {
                return Err(bad_input!(
                    "a saved plan is applied exactly: --space and --allow-large-change belong to `eos-sec plan`"
                ));
            }
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad_input!("{name}: cannot read: {e}"))?;
            let saved = SavedPlan::parse(&text, &name, &opts)?;
            if !saved.has_changes() {
                return no_changes(ctx.json);
            }
            let (now, delivers) = replan(&saved.spaces(), saved.allow_large_change())?;
            let plan = saved.confirm(now, &name).map_err(anyhow::Error::from)?;
            (plan, delivers)
        }
        None => {
            let (plan, delivers) = replan(&args.space, args.allow_large_change)?;
            if !plan.has_changes() {
                return no_changes(ctx.json);
            }
            if args.yes {
                shown = render_plan(&plan, use_colour());
                (plan, delivers)
            } else {
                // Show the plan before asking (stderr: stdout carries only the result).
                let text = render_plan(
                    &plan,
                    std::io::stderr().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
                );
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("{text}");
                }
                if !confirm()? {
                    return emit("Apply cancelled.\n");
                }
                // The answer may have taken minutes.
                let (now, delivers) = replan(&args.space, args.allow_large_change)?;
                let plan = plan.confirm(now).map_err(anyhow::Error::from)?;
                (plan, delivers)
            }
        }
    };
    let report = rt.block_on(ops::apply_and_record(
        &mut store,
        &backend,
        &plan,
        &delivers,
        &actor(),
    ))?;
    if ctx.json {
        return emit_json(&report);
    }
    shown.push_str(&render_applied(&report.applied));
    emit(&shown)
}

fn no_changes(json: bool) -> anyhow::Result<()> {
    if json {
        return emit_json(&serde_json::json!({ "applied": [] }));
    }
    emit("No changes. Nothing to apply.\n")
}

/// One line per set applied.
pub fn render_applied(applied: &[AppliedSet]) -> String {
    let mut out = String::new();
    for a in applied {
        let retries = if a.attempts > 1 {
            format!(" after {} attempts (concurrent writers)", a.attempts)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{}: {} (+{} -{}), {} entries{retries}",
            a.name,
            a.outcome,
            a.added.len(),
            a.removed.len(),
            a.entries.len()
        );
    }
    let _ = writeln!(out, "Apply complete: {} IPSet(s).", applied.len());
    out
}
