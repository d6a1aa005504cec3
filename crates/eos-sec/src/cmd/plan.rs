//! `eos-sec plan` and `eos-sec apply`: desired sets vs the backend's IPSets,
//! reviewed like `terraform plan`, applied with WAF's lock-token contract.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use eos_identity::SpaceId;
use eos_ipset::IpNet;
use eos_plan::{
    ActualInput, ActualSet, AppliedSet, BackendError, CheckedOptions, Desired, Finding,
    IpSetBackend, IpSetName, LockToken, NewIpSet, Plan, PlanEntry, SavedPlan, SetAction, SetChange,
    Severity, apply_plan, desired_sets, names_in_scope, plan_changes,
};
use eos_store::Store;
use eos_store::ipsets::{LocalBackend, managed_entries, record_apply, record_intent, save_plan};
use eos_store::rules::{list_rules, load_observations};

use crate::cmd::rules::actor;
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

/// The configured backend.
#[derive(Debug)]
pub enum Backend {
    /// The state store.
    Local(LocalBackend),
    /// AWS WAFv2.
    Aws(eos_aws::wafv2::WafBackend),
}

impl IpSetBackend for Backend {
    fn id(&self) -> String {
        match self {
            Backend::Local(b) => b.id(),
            Backend::Aws(b) => b.id(),
        }
    }
    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
        match self {
            Backend::Local(b) => b.read(name).await,
            Backend::Aws(b) => b.read(name).await,
        }
    }
    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError> {
        match self {
            Backend::Local(b) => b.create(set).await,
            Backend::Aws(b) => b.create(set).await,
        }
    }
    async fn update(
        &self,
        name: &IpSetName,
        a: &[IpNet],
        d: &str,
        l: &LockToken,
    ) -> Result<LockToken, BackendError> {
        match self {
            Backend::Local(b) => b.update(name, a, d, l).await,
            Backend::Aws(b) => b.update(name, a, d, l).await,
        }
    }
    async fn pause_before_retry(&self, attempt: u32) {
        match self {
            Backend::Local(b) => b.pause_before_retry(attempt).await,
            Backend::Aws(b) => b.pause_before_retry(attempt).await,
        }
    }
}

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
            Ok(Backend::Local(
                LocalBackend::open(&ctx.state_dir).context("opening the local backend")?,
            ))
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
            let b = eos_aws::wafv2::WafBackend::connect(&opts, scope)
                .await
                .map_err(|e| bad_input!("{e}"))?;
            Ok(Backend::Aws(b))
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

/// Desired sets from the stored rules and observations of `spaces` (all
/// when empty).
pub fn desired_from_store(
    store: &Store,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
) -> anyhow::Result<Desired> {
    desired_in(store.conn(), spaces, opts)
}

/// [`desired_from_store`] on a connection (also inside a transaction, to
/// plan from writes not yet committed).
pub fn desired_in(
    conn: &eos_store::rusqlite::Connection,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
) -> anyhow::Result<Desired> {
    let rules: Vec<_> = list_rules(conn, spaces)?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    let obs = load_observations(conn, spaces)?;
    Ok(desired_sets(
        &rules,
        &obs,
        opts,
        time::OffsetDateTime::now_utc(),
    ))
}

/// Read the actual state of every set in scope and plan.
pub async fn make_plan(
    store: &Store,
    backend: &Backend,
    desired: &Desired,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
    allow_large_change: bool,
) -> anyhow::Result<Plan> {
    let scope: Vec<SpaceId> = if spaces.is_empty() {
        desired.spaces.clone()
    } else {
        spaces.to_vec()
    };
    let id = backend.id();
    let mut actual = BTreeMap::new();
    for name in names_in_scope(&scope) {
        let set = backend
            .read(&name)
            .await
            .with_context(|| format!("reading {name}"))?;
        let managed = managed_entries(store.conn(), &id, &name)?;
        actual.insert(name, ActualInput { set, managed });
    }
    Ok(plan_changes(
        desired,
        &actual,
        opts,
        allow_large_change,
        &id,
        time::OffsetDateTime::now_utc(),
    )?)
}

pub fn run_plan(args: PlanArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let opts = plan_options(ctx)?;
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &args.backend))?;
    let desired = desired_from_store(&store, &args.space, &opts)?;
    let plan = rt
        .block_on(make_plan(
            &store,
            &backend,
            &desired,
            &args.space,
            &opts,
            args.allow_large_change,
        ))
        .map_err(|e| refusal_json(e, ctx.json))?;
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

/// The outbox rows of `spaces` (all when empty) pending now. A plan made
/// from the rules as they are now delivers them once it is applied, so
/// `eos-sec sync` need not re-check those sets.
pub fn pending_in_scope(store: &Store, spaces: &[SpaceId]) -> anyhow::Result<Vec<i64>> {
    pending_in(store.conn(), spaces)
}

/// [`pending_in_scope`] on a connection (also inside a transaction).
pub fn pending_in(
    conn: &eos_store::rusqlite::Connection,
    spaces: &[SpaceId],
) -> anyhow::Result<Vec<i64>> {
    Ok(eos_store::sync::pending(conn, usize::MAX)?
        .into_iter()
        .filter(|r| spaces.is_empty() || spaces.contains(&r.space))
        .map(|r| r.id)
        .collect())
}

/// Mark rows from [`pending_in_scope`] delivered after a successful apply.
pub fn mark_applied(store: &mut Store, ids: &[i64], backend: &str) -> anyhow::Result<()> {
    Ok(eos_store::sync::mark_delivered(
        store,
        ids,
        backend,
        &actor(),
        time::OffsetDateTime::now_utc(),
    )?)
}

/// Record the entries a plan will add as eos-sec's before writing them
/// (see `eos_store::ipsets::record_intent`).
pub fn record_plan_intent(store: &mut Store, plan: &Plan) -> anyhow::Result<()> {
    let changes: Vec<&SetChange> = plan
        .changes()
        .iter()
        .filter(|c| c.action != SetAction::NoChange)
        .collect();
    Ok(record_intent(store, plan.backend(), &changes)?)
}

/// With `--json`, a refusal is also a JSON document on stdout
/// (`{"refused": [findings]}`) so scripts can match the stable codes.
pub fn refusal_json(e: anyhow::Error, json: bool) -> anyhow::Error {
    if json
        && let Some(r) = e
            .chain()
            .find_map(|c| c.downcast_ref::<eos_plan::Refused>())
    {
        let _ = emit_json(&serde_json::json!({ "refused": r.findings }));
    }
    e
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
        e.cidr
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
    let replan =
        |spaces: &[SpaceId], allow_large_change: bool| -> anyhow::Result<(Plan, Vec<i64>)> {
            // Rows pending before planning are delivered by a plan made from
            // the rules as they are after.
            let delivers = pending_in_scope(&store, spaces)?;
            let desired = desired_from_store(&store, spaces, &opts)?;
            let plan = rt.block_on(make_plan(
                &store,
                &backend,
                &desired,
                spaces,
                &opts,
                allow_large_change,
            ))?;
            Ok((plan, delivers))
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
            let (now, delivers) = replan(&saved.spaces(), saved.allow_large_change())
                .map_err(|e| refusal_json(e, ctx.json))?;
            let plan = saved
                .confirm(now, &name)
                .map_err(|e| refusal_json(e.into(), ctx.json))?;
            (plan, delivers)
        }
        None => {
            let (plan, delivers) = replan(&args.space, args.allow_large_change)
                .map_err(|e| refusal_json(e, ctx.json))?;
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
                let (now, delivers) = replan(&args.space, args.allow_large_change)
                    .map_err(|e| refusal_json(e, ctx.json))?;
                let plan = plan
                    .confirm(now)
                    .map_err(|e| refusal_json(e.into(), ctx.json))?;
                (plan, delivers)
            }
        }
    };
    let plan_id = save_plan(&mut store, plan.backend(), &plan.to_json(), &actor())?;
    record_plan_intent(&mut store, &plan)?;
    let result = rt.block_on(apply_plan(&backend, &plan));
    let applied = match result {
        Ok(a) => a,
        Err(e) => return Err(anyhow::Error::new(e).context("apply stopped")),
    };
    record_apply(
        &mut store,
        plan.backend(),
        Some(plan_id),
        &applied,
        &actor(),
    )?;
    mark_applied(&mut store, &delivers, plan.backend())?;
    if ctx.json {
        return emit_json(
            &serde_json::json!({ "plan_id": plan_id, "backend": plan.backend(), "applied": applied }),
        );
    }
    shown.push_str(&render_applied(&applied));
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
