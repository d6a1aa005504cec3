//! `eos-sec enforce` and `eos-sec rollback`: move a space one stage forward
//! (staged → count → enforce) or back to a snapshot, on the configured
//! backend. The steps, guards and snapshots are `eos_policy::enforce`'s;
//! this module wires the backend, the state store and the output.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use eos_identity::SpaceId;
use eos_ipset::parse_addr_strict;
use eos_ops::enforce::{self as ops, Edge, SnapshotRow};
use eos_policy::Stage;
use eos_policy::enforce::{
    EnforceOptions, EnforceReport, Guard, ListenerStep, RollbackOptions, RollbackReport, StepReport,
};
use eos_policy::gate::GateBackend;

use crate::cmd::actor;
use crate::cmd::plan::{BackendArgs, open_backend, runtime};
use crate::cmd::policy::{LogArgs, backend_sets, load_policy, simulate_logs};
use crate::exit::bad_input;
use crate::output::{emit, emit_json, paint, use_colour};

/// Arguments of `enforce`.
#[derive(Debug, Args)]
pub struct EnforceArgs {
    /// The space to move forward
    #[arg(long, value_name = "SPACE")]
    pub space: SpaceId,
    /// The stage to move to: the next one (staged, count, enforce) [default:
    /// the stage after the recorded one]
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<Stage>,
    /// Your own address as WAF sees it (repeatable); enforcing refuses when
    /// one is outside the space's sets [default: `[policy] operator_ips`]
    #[arg(long = "operator-ip", value_name = "ADDR")]
    pub operator_ips: Vec<String>,
    /// Your own client certificate (PEM, leaf first): moving a listener to
    /// verify refuses when the bundle and CRL being enforced would refuse it
    /// [default: `[gate] operator_cert`]
    #[arg(long = "operator-cert", value_name = "FILE")]
    pub operator_cert: Option<PathBuf>,
    /// Enforce although a guard refuses (recorded in the audit log with the
    /// guards it overrode)
    #[arg(long)]
    pub force: bool,
    /// Policy file [default: `[policy] file` from the config, else ./policy.toml]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub logs: LogArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The space whose latest enforce to undo
    #[arg(long, value_name = "SPACE")]
    pub space: SpaceId,
    /// Restore this snapshot [default: the one taken before the space's
    /// latest enforce]
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "list")]
    pub to: Option<i64>,
    /// List the space's snapshots on this backend instead (newest first)
    #[arg(long)]
    pub list: bool,
    /// Your own client certificate (PEM, leaf first), checked when the
    /// snapshot puts a listener back to verify [default: `[gate] operator_cert`]
    #[arg(long = "operator-cert", value_name = "FILE")]
    pub operator_cert: Option<PathBuf>,
    /// Policy file [default: `[policy] file` from the config, else ./policy.toml]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The certificate gate for enforce and rollback: `[[gate.listeners]]`
/// and the operator's certificate (`--operator-cert`, else `[gate]
/// operator_cert`), read before any AWS call; then, when a listener is
/// configured, the AWS side, the CA's current material and eos-sec's trust
/// store records.
fn open_edge(
    ctx: &crate::Ctx,
    rt: &tokio::runtime::Runtime,
    store: &eos_store::Store,
    flag: Option<&std::path::Path>,
    backend: &BackendArgs,
) -> anyhow::Result<Edge> {
    let mut edge = Edge::none();
    edge.listeners = ctx.config.gate.listener_configs()?;
    if edge.listeners.is_empty() {
        return Ok(edge);
    }
    edge.operator_cert = flag
        .map(std::path::Path::to_path_buf)
        .or_else(|| ctx.config.gate.operator_cert.clone())
        .map(|p| {
            eos_policy::read_chain(&p).map_err(|e| {
                bad_input!("operator certificate (--operator-cert, [gate] operator_cert): {e}")
            })
        })
        .transpose()?;
    let aws = rt.block_on(super::gate::connect_for_listeners(
        ctx,
        &gate_aws_args(backend),
    ))?;
    if let Some(aws) = &aws {
        edge.material = super::gate::material(ctx, store).map_err(|e| format!("{e:#}"));
        edge.records = super::gate::trust_store_records(ctx, store, &aws.gate_backend_id())?;
    }
    edge.aws = aws;
    Ok(edge)
}

/// The AWS flags for the certificate gate's calls: the backend's.
fn gate_aws_args(b: &BackendArgs) -> super::aws::AwsArgs {
    super::aws::AwsArgs {
        region: b.region.clone(),
        profile: None,
        endpoint_url: b.endpoint_url.clone(),
    }
}

/// The operator's addresses: `--operator-ip`, else `[policy] operator_ips`.
fn operator_ips(args: &[String], ctx: &crate::Ctx) -> anyhow::Result<Vec<IpAddr>> {
    let (list, origin) = if args.is_empty() {
        (&ctx.config.policy.operator_ips, "[policy] operator_ips")
    } else {
        (&args.to_vec(), "--operator-ip")
    };
    list.iter()
        .map(|a| parse_addr_strict(a).map_err(|e| bad_input!("{origin} `{a}`: {e}")))
        .collect()
}

pub fn run_enforce(args: EnforceArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let policy = load_policy(args.policy.as_deref(), ctx)?;
    policy.space(&args.space)?;
    let operator_ips = operator_ips(&args.operator_ips, ctx)?;
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &args.backend))?;
    let simulation = if args.logs.is_empty(ctx) {
        None
    } else {
        let sets = rt.block_on(backend_sets(&backend, &policy))?;
        Some(simulate_logs(&policy, &sets, &args.logs, ctx)?)
    };
    let opts = EnforceOptions {
        policy: &policy,
        space: args.space.clone(),
        target: args.stage,
        operator_ips,
        simulation,
        force: args.force,
        actor: actor(),
    };
    let edge = open_edge(
        ctx,
        &rt,
        &store,
        args.operator_cert.as_deref(),
        &args.backend,
    )?;
    let report = rt
        .block_on(ops::enforce(&mut store, &backend, &edge, &opts))
        .map_err(anyhow::Error::new)?;
    if ctx.json {
        return emit_json(&report);
    }
    emit(&render_enforce(&report, use_colour()))
}

pub fn run_rollback(args: RollbackArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let policy = load_policy(args.policy.as_deref(), ctx)?;
    policy.space(&args.space)?;
    let mut store = ctx.store()?;
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &args.backend))?;
    if args.list {
        let snapshots = ops::snapshots(&store, &backend, &policy, &args.space)?;
        if ctx.json {
            return emit_json(&snapshots);
        }
        return emit(&render_snapshots(&snapshots));
    }
    let opts = RollbackOptions {
        policy: &policy,
        space: args.space.clone(),
        to: args.to,
        actor: actor(),
    };
    let edge = open_edge(
        ctx,
        &rt,
        &store,
        args.operator_cert.as_deref(),
        &args.backend,
    )?;
    let report = rt
        .block_on(ops::rollback(&mut store, &backend, &edge, &opts))
        .map_err(anyhow::Error::new)?;
    if ctx.json {
        return emit_json(&report);
    }
    emit(&render_rollback(&report))
}

/// The human list of snapshots.
pub fn render_snapshots(rows: &[SnapshotRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No snapshots for this space on this backend.\n");
    }
    for r in rows {
        let _ = writeln!(
            out,
            "{:>4}  run {:>4}  {}  {:<8}  stage {:<7}  default {}, {} rules",
            r.id,
            r.run,
            r.at,
            r.kind.as_str(),
            r.stage.as_str(),
            r.default_action,
            r.rules.len()
        );
    }
    out
}

fn render_steps(out: &mut String, steps: &[StepReport]) {
    for s in steps {
        let retries = if s.attempts > 1 {
            format!(" after {} attempts (concurrent writers)", s.attempts)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<14} snapshot {:>3} -> default {}, rules [{}]{retries}",
            s.kind.as_str(),
            s.snapshot,
            s.default_action,
            s.rules.join(", ")
        );
    }
}

fn render_listener(out: &mut String, step: Option<&ListenerStep>) {
    if let Some(l) = step {
        let _ = writeln!(
            out,
            "  listener       snapshot {:>3} -> {} (was {}) on {}",
            l.snapshot, l.after, l.before, l.arn
        );
    }
}

fn render_guards(out: &mut String, label: &str, guards: &[Guard], colour: bool) {
    for g in guards {
        let _ = writeln!(out, "  {} {g}", paint(colour, "33", label));
    }
}

/// The human report of an enforce.
pub fn render_enforce(r: &EnforceReport, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "enforce {}: {} -> {} on backend {} (Web ACL {})",
        r.space, r.from, r.to, r.backend, r.web_acl
    );
    if r.created_web_acl {
        let _ = writeln!(out, "  created the Web ACL (nothing gated yet)");
    }
    if r.from == r.to && r.steps.is_empty() {
        let _ = writeln!(out, "  already at stage {}: nothing to do", r.to);
    }
    render_steps(&mut out, &r.steps);
    render_listener(&mut out, r.listener.as_ref());
    render_guards(&mut out, "warning:", &r.warnings, colour);
    render_guards(&mut out, "FORCED:", &r.forced, colour);
    if let Some(run) = r.run {
        let _ = writeln!(
            out,
            "Undo with: eos-sec rollback --space {} (restores snapshot {run})",
            r.space
        );
    }
    out
}

/// The human report of a rollback.
pub fn render_rollback(r: &RollbackReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollback {}: restore snapshot {} on backend {} (Web ACL {})",
        r.space, r.snapshot, r.backend, r.web_acl
    );
    if r.was_noop() {
        let _ = writeln!(out, "  already at snapshot {}: nothing to do", r.snapshot);
    }
    render_listener(&mut out, r.listener.as_ref());
    render_steps(&mut out, &r.steps);
    if let Some((then, now)) = &r.trust_store_changes {
        let ids = |t: &eos_policy::edge::TrustStoreSnapshot| {
            t.revocations
                .iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "  note: trust store {} changed since the snapshot (revocations [{}] -> [{}]); kept: `gate publish`/`sync` own it, a rollback never un-revokes",
            now.name,
            ids(then),
            ids(now)
        );
    }
    for (space, (before, after)) in &r.stage_changes {
        let _ = writeln!(out, "  stage {space}: {before} -> {after}");
    }
    for (name, (added, removed)) in &r.set_changes {
        let _ = writeln!(
            out,
            "  note: {name} changed since the snapshot (+{} -{}); kept: `eos-sec plan`/`apply` own set contents",
            added.len(),
            removed.len()
        );
    }
    out
}
