//! `eos-sec policy ...`: compile, evaluate and simulate the restricted
//! firewall described by the policy file.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_identity::SpaceId;
use eos_ipset::{Family, IpSet, IpSetBuilder, ReadStats, parse_addr_strict, read_list};
use eos_plan::{IpSetBackend, IpSetName};
use eos_policy::{
    CertInventory, CertSimulation, CertSimulator, Compiled, Decision, Evaluator, IssuedCert,
    Policy, SetArns, SimRecord, Simulation, Simulator, Stage, TrustConfig, UnixTime, read_chain,
    set_name,
};
use serde::Serialize;

use crate::cmd::plan::{Backend, BackendArgs, open_backend, runtime};
use crate::exit::bad_input;
use crate::output::{emit, emit_json, paint, use_colour};

/// The restricted firewall: compile, evaluate, simulate.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the WAFv2 Web ACL the policy compiles to (deterministic JSON;
    /// `--json` adds capacity, per-space rules and mTLS listener settings)
    Compile(CompileArgs),
    /// Decide one request: ALLOW or BLOCK, and the rule that decided
    Eval(EvalArgs),
    /// Replay request records through the policy: what enforcement would block
    Simulate(SimulateArgs),
}

/// Where the policy and the sets come from.
#[derive(Debug, Args)]
pub struct PolicySource {
    /// Policy file [default: `[policy] file` from the config, else ./policy.toml]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Use this address/CIDR list as a space's sets instead of the
    /// backend's, SPACE=FILE (repeatable; v4 and v6 entries go to
    /// eos-SPACE-v4 / eos-SPACE-v6) [default: the sets on the configured
    /// backend, `[backend]`]
    #[arg(long = "set", value_name = "SPACE=FILE")]
    pub sets: Vec<String>,

    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Logs to replay, read by `eos_logs` (docs/LOG-FORMATS.md). The evidence
/// filters and Logs Insights of the shared scan flags do not apply to a
/// replay of every request: they are hidden here.
#[derive(Debug, Args)]
#[command(
    mut_arg("min_requests", |a| a.hide(true)),
    mut_arg("min_days", |a| a.hide(true)),
    mut_arg("allow_anonymous", |a| a.hide(true)),
    mut_arg("status_class", |a| a.hide(true)),
    mut_arg("insights", |a| a.hide(true)),
    mut_arg("insights_wait", |a| a.hide(true)),
    mut_arg("threads", |a| a.hide(true))
)]
pub struct LogArgs {
    /// Logs to replay: files (plain or gzip), directories, globs, `-` for
    /// stdin [default: `[policy] logs`]
    #[arg(long = "logs", value_name = "SOURCE", num_args = 1..)]
    pub logs: Vec<String>,
    /// ALB connection logs to replay through the certificate gate: who
    /// each space's listener would refuse in `verify` mode (no
    /// certificate, unknown CA, expired, revoked, bound to another space),
    /// against the CA's inventory and CRL in the state store. With ALB
    /// access logs in `--logs` (`--format alb`), a connection counts for
    /// the space its requests called (joined on `conn_trace_id`)
    #[arg(long = "connections", value_name = "SOURCE", num_args = 1..)]
    pub connections: Vec<String>,
    /// The same reading options as `logs scan` (format, window, trusted
    /// proxies over `[logs]`); the evidence filters do not apply here:
    /// every request is replayed
    #[command(flatten)]
    pub scan: crate::cmd::scan::ScanFlags,
}

impl LogArgs {
    fn sources<'a>(&'a self, ctx: &'a crate::Ctx) -> &'a [String] {
        if self.logs.is_empty() {
            &ctx.config.policy.logs
        } else {
            &self.logs
        }
    }

    /// True when neither `--logs` nor `[policy] logs` nor `--connections`
    /// names a source.
    pub fn is_empty(&self, ctx: &crate::Ctx) -> bool {
        self.sources(ctx).is_empty() && self.connections.is_empty()
    }

    fn scan_options(&self, ctx: &crate::Ctx) -> anyhow::Result<eos_logs::ScanOptions> {
        if self.scan.insights {
            return Err(bad_input!(
                "--insights aggregates in AWS: a simulation replays every request; read the log group without it"
            ));
        }
        self.scan.options(ctx)
    }

    fn inputs(&self, ctx: &crate::Ctx) -> anyhow::Result<Vec<eos_logs::Input>> {
        expand_sources(self.sources(ctx), "--logs")
    }
}

/// `--logs`/`--connections` sources as inputs: files, directories, globs,
/// stdin (CloudWatch is refused: a replay needs every line).
fn expand_sources(specs: &[String], flag: &str) -> anyhow::Result<Vec<eos_logs::Input>> {
    let mut inputs = Vec::new();
    for spec in specs {
        if spec.starts_with(crate::cmd::scan::CLOUDWATCH) {
            return Err(bad_input!(
                "{flag} {spec}: simulate reads files, directories, globs and stdin; export the log group first"
            ));
        }
        inputs.extend(eos_logs::Input::expand(spec).map_err(|e| bad_input!("{flag} {spec}: {e}"))?);
    }
    Ok(inputs)
}

/// Arguments of `policy compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub source: PolicySource,
    /// Compile this space at `--stage` (others at their declared stage)
    #[arg(long, value_name = "SPACE", requires = "stage")]
    pub space: Option<SpaceId>,
    /// The stage for `--space`: off, staged, count or enforce
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<Stage>,
}

/// Arguments of `policy eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub source: PolicySource,
    /// The space the request is for
    #[arg(long, value_name = "SPACE")]
    pub space: SpaceId,
    /// The client address (as WAF resolves it)
    #[arg(long, value_name = "ADDR")]
    pub ip: String,
    /// Client certificate chain, PEM, leaf first
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Evaluate the space at this stage [default: its declared stage]
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<Stage>,
}

/// Arguments of `policy simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub source: PolicySource,
    #[command(flatten)]
    pub logs: LogArgs,
}

pub fn run(cmd: PolicyCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Compile(a) => compile(a, ctx),
        PolicyCommand::Eval(a) => eval(a, ctx),
        PolicyCommand::Simulate(a) => simulate(a, ctx),
    }
}

/// The policy file: `--policy`, then `[policy] file`, then ./policy.toml.
pub fn load_policy(explicit: Option<&Path>, ctx: &crate::Ctx) -> anyhow::Result<Policy> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| ctx.config.policy.file.clone())
        .unwrap_or_else(|| PathBuf::from("policy.toml"));
    Ok(Policy::from_file(&path)?)
}

/// Sets given with `--set SPACE=FILE`.
pub fn sets_from_args(args: &[String]) -> anyhow::Result<BTreeMap<String, IpSet>> {
    let mut out: BTreeMap<String, IpSet> = BTreeMap::new();
    for a in args {
        let Some((space, file)) = a.split_once('=') else {
            return Err(bad_input!("--set `{a}`: expected SPACE=FILE"));
        };
        let space = SpaceId::new(space).map_err(|e| bad_input!("--set `{a}`: {e}"))?;
        let f = std::fs::File::open(file).map_err(|e| bad_input!("{file}: cannot open: {e}"))?;
        let mut b = IpSetBuilder::new();
        read_list(BufReader::new(f), file, &mut b, &mut ReadStats::default())
            .with_context(|| format!("reading {file}"))?;
        let set = b.build();
        for (family, part) in [
            (eos_ipset::Family::V4, set.v4()),
            (eos_ipset::Family::V6, set.v6()),
        ] {
            let name = set_name(&space, family);
            let merged = out.get(&name).map_or(part.clone(), |s| s.union(&part));
            out.insert(name, merged);
        }
    }
    Ok(out)
}

fn compile(args: CompileArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let policy = load_policy(args.source.policy.as_deref(), ctx)?;
    let mut stages = BTreeMap::new();
    if let (Some(space), Some(stage)) = (args.space, args.stage) {
        stages.insert(space, stage);
    } else if args.stage.is_some() {
        return Err(bad_input!("--stage needs --space"));
    }
    let compiled = eos_policy::compile(&policy, &stages, &SetArns::default())?;
    if ctx.json {
        return emit_json(&compiled);
    }
    let mut out = serde_json::to_string_pretty(&compiled.web_acl)?;
    out.push('\n');
    summary_to_stderr(&compiled);
    emit(&out)
}

#[allow(clippy::print_stderr)]
fn summary_to_stderr(c: &Compiled) {
    let mut s = String::new();
    let cap = &c.capacity;
    let _ = writeln!(
        s,
        "# default {}; {} rules; ~{} WCU (included {}, max {}); {} of {} reference statements",
        c.web_acl.default_action.as_str(),
        c.web_acl.rules.len(),
        cap.wcu,
        cap.wcu_included,
        cap.wcu_max,
        cap.references,
        cap.references_max
    );
    for w in &cap.warnings {
        let _ = writeln!(s, "# warning: {w}");
    }
    for sp in &c.spaces {
        let _ = writeln!(
            s,
            "# {}: mode {}, stage {}, listener {}, rules [{}]",
            sp.space,
            sp.mode,
            sp.stage,
            sp.listener.as_str(),
            sp.rules.join(", ")
        );
    }
    eprint!("{s}");
}

fn trust(policy: &Policy, needed: bool) -> anyhow::Result<Option<TrustConfig>> {
    if !needed {
        return Ok(None);
    }
    Ok(TrustConfig::from_policy(policy)?)
}

fn eval(args: EvalArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let policy = load_policy(args.source.policy.as_deref(), ctx)?;
    policy.space(&args.space)?;
    let ip: IpAddr =
        parse_addr_strict(&args.ip).map_err(|e| bad_input!("--ip `{}`: {e}", args.ip))?;
    let sets = sets_for(&policy, &args.source, ctx)?;
    let mut stages = BTreeMap::new();
    if let Some(st) = args.stage {
        stages.insert(args.space.clone(), st);
    }
    let chain = args.cert.as_deref().map(read_chain).transpose()?;
    let trust = trust(&policy, chain.is_some())?;
    let evaluator = Evaluator::new(&policy, &stages, &sets, trust)?;
    let req = eos_policy::Request::to_space(&policy.routing, &args.space, ip);
    let d = evaluator.evaluate(&req, chain.as_deref(), UnixTime::now());
    if ctx.json {
        return emit_json(&d);
    }
    emit(&render_decision(&d, &args.ip, use_colour()))
}

/// The human form of a decision.
pub fn render_decision(d: &Decision, ip: &str, colour: bool) -> String {
    let verdict = |v: eos_policy::Verdict| match v {
        eos_policy::Verdict::Allow => paint(colour, "32", "ALLOW"),
        eos_policy::Verdict::Block => paint(colour, "31", "BLOCK"),
    };
    let mut s = String::new();
    let space = d.space.as_ref().map_or("-".to_owned(), ToString::to_string);
    let _ = writeln!(
        s,
        "{} {ip} -> {space} (mode {}, stage {}) by {} rule {}",
        verdict(d.now.verdict),
        d.mode.map_or("-".to_owned(), |m| m.to_string()),
        d.stage.map_or("-".to_owned(), |m| m.to_string()),
        d.now.layer.as_str(),
        d.now.rule
    );
    if !d.now.counted.is_empty() {
        let _ = writeln!(s, "  counted (would block): {}", d.now.counted.join(", "));
    }
    let _ = writeln!(
        s,
        "  once enforced: {} by {} rule {}",
        verdict(d.enforced.verdict),
        d.enforced.layer.as_str(),
        d.enforced.rule
    );
    let _ = writeln!(
        s,
        "  address in set: {}",
        match d.ip_in_set {
            Some(true) => "yes",
            Some(false) => "no",
            None => "no sets for this space",
        }
    );
    let _ = writeln!(
        s,
        "  certificate: {}",
        match &d.cert {
            eos_policy::CertStatus::Absent => "none presented".to_owned(),
            eos_policy::CertStatus::Valid { uri } => format!("valid ({uri})"),
            eos_policy::CertStatus::Invalid { reason } => format!("refused: {reason}"),
        }
    );
    if !d.not_evaluated.is_empty() {
        let _ = writeln!(
            s,
            "  not evaluated (run at AWS): {}",
            d.not_evaluated.join(", ")
        );
    }
    s
}

/// Every declared space's sets as the backend has them (absent sets are
/// left out).
pub async fn backend_sets(
    backend: &Backend,
    policy: &Policy,
) -> anyhow::Result<BTreeMap<String, IpSet>> {
    let mut out = BTreeMap::new();
    for id in policy.spaces.keys() {
        for family in [Family::V4, Family::V6] {
            let name = IpSetName::staged(id, family);
            if let Some(set) = backend
                .read(&name)
                .await
                .with_context(|| format!("reading {name}"))?
            {
                out.insert(name.to_string(), IpSet::from_nets(set.addresses));
            }
        }
    }
    Ok(out)
}

/// The sets to evaluate with: the backend's, with `--set` overriding whole
/// spaces.
fn sets_for(
    policy: &Policy,
    source: &PolicySource,
    ctx: &crate::Ctx,
) -> anyhow::Result<BTreeMap<String, IpSet>> {
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &source.backend))?;
    let mut sets = rt.block_on(backend_sets(&backend, policy))?;
    merge_set_overrides(&mut sets, &source.sets)?;
    Ok(sets)
}

/// `--set SPACE=FILE` over the backend's sets: each named space's two sets
/// are replaced by the file's.
pub fn merge_set_overrides(
    sets: &mut BTreeMap<String, IpSet>,
    args: &[String],
) -> anyhow::Result<()> {
    let overrides = sets_from_args(args)?;
    for name in overrides.keys() {
        if let Some(space) = name.strip_prefix("eos-").and_then(|n| n.rsplit_once('-')) {
            for family in [Family::V4, Family::V6] {
                sets.remove(&format!("eos-{}-{}", space.0, family.as_str()));
            }
        }
    }
    sets.extend(overrides);
    Ok(())
}

/// A simulation with what was read.
#[derive(Debug, Serialize)]
pub struct SimulationReport {
    /// Per space.
    #[serde(flatten)]
    pub simulation: Simulation,
    /// Inputs, lines, records and bad lines of the logs.
    pub scan: eos_logs::ScanStats,
    /// The same for the connection logs, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_scan: Option<eos_logs::ScanStats>,
}

fn simulate(args: SimulateArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let policy = load_policy(args.source.policy.as_deref(), ctx)?;
    if args.logs.is_empty(ctx) {
        return Err(bad_input!(
            "no logs to replay: pass --logs SOURCE... or --connections SOURCE... or set [policy] logs"
        ));
    }
    let sets = sets_for(&policy, &args.source, ctx)?;
    let report = run_simulation(&policy, &sets, &args.logs, ctx)?;
    if ctx.json {
        return emit_json(&report);
    }
    emit(&render_simulation(&report, use_colour()))
}

/// Replay the logs through the policy at its declared stages, and the
/// connection logs through the certificate gate.
pub fn run_simulation(
    policy: &Policy,
    sets: &BTreeMap<String, IpSet>,
    logs: &LogArgs,
    ctx: &crate::Ctx,
) -> anyhow::Result<SimulationReport> {
    let opts = logs.scan_options(ctx)?;
    let inputs = logs.inputs(ctx)?;
    let evaluator = Evaluator::new(policy, &BTreeMap::new(), sets, None)?;
    let mut sim = Simulator::new(policy, &evaluator, UnixTime::now());
    let want_traces = !logs.connections.is_empty();
    let mut traces: HashMap<String, SpaceId> = HashMap::new();
    let scan = if inputs.is_empty() {
        eos_logs::ScanStats::default()
    } else {
        eos_logs::for_each_record(inputs, &opts, None, |r| {
            sim.record(&SimRecord::from_log(r));
            if want_traces && let Some(t) = r.conn_trace_id {
                traces.insert(t.to_owned(), r.space.clone());
            }
        })
        .context("reading the logs")?
    };
    let mut simulation = sim.finish();
    let mut connections_scan = None;
    if want_traces {
        let inventory = cert_inventory(ctx)?;
        let mut certs = CertSimulator::new(policy, &inventory);
        let inputs = expand_sources(&logs.connections, "--connections")?;
        let stats = eos_logs::for_each_connection(inputs, &opts, |c| {
            certs.record(c, c.trace_id.and_then(|t| traces.get(t)));
        })
        .context("reading the connection logs")?;
        simulation.certificates = Some(certs.finish());
        connections_scan = Some(stats);
    }
    Ok(SimulationReport {
        simulation,
        scan,
        connections_scan,
    })
}

/// The CA's inventory and current CRL from the state store.
fn cert_inventory(ctx: &crate::Ctx) -> anyhow::Result<CertInventory> {
    let store = ctx.store()?;
    let mut inventory = CertInventory::new();
    for c in eos_store::certs::list(store.conn(), &eos_store::certs::CertFilter::default())? {
        let space = SpaceId::new(&c.space)
            .map_err(|e| anyhow::anyhow!("state database: certificate {}: {e}", c.serial))?;
        inventory.issued(
            &c.serial,
            IssuedCert {
                space,
                user: c.user,
                revoked: c.status == "revoked",
            },
        );
    }
    if let Some(crl) = eos_store::certs::latest_crl(store.conn())? {
        inventory
            .on_crl_pem(crl.pem.as_bytes())
            .with_context(|| format!("state database: CRL {}", crl.number))?;
    }
    Ok(inventory)
}

/// A simulation for the enforce guards.
pub fn simulate_logs(
    policy: &Policy,
    sets: &BTreeMap<String, IpSet>,
    logs: &LogArgs,
    ctx: &crate::Ctx,
) -> anyhow::Result<Simulation> {
    Ok(run_simulation(policy, sets, logs, ctx)?.simulation)
}

/// The human form of a simulation.
pub fn render_simulation(report: &SimulationReport, colour: bool) -> String {
    let r = &report.simulation;
    let mut s = String::new();
    let bad = report.scan.bad.total();
    let _ = writeln!(
        s,
        "replayed {} records from {} lines of {} inputs ({bad} unusable lines)",
        report.scan.records, report.scan.lines, report.scan.inputs
    );
    for (space, sp) in &r.spaces {
        let _ = writeln!(
            s,
            "{space}: {} requests, {} blocked now, {} would be blocked once enforced ({} addresses, {} users)",
            sp.requests,
            sp.blocked_now,
            sp.would_block,
            sp.blocked_addresses,
            sp.blocked_users.len()
        );
        for b in &sp.top_blocked {
            let _ = writeln!(s, "  {:>8}  {}", b.requests, b.ip);
        }
        if !sp.blocked_users.is_empty() {
            let users: Vec<&str> = sp.blocked_users.iter().map(|u| u.as_str()).collect();
            let _ = writeln!(s, "  users: {}", users.join(", "));
        }
        if !sp.blocked_admins.is_empty() {
            let admins: Vec<&str> = sp.blocked_admins.iter().map(|u| u.as_str()).collect();
            let _ = writeln!(
                s,
                "  {} declared administrators would be blocked: {}",
                paint(colour, "1;31", "WARNING:"),
                admins.join(", ")
            );
        }
    }
    if r.unknown_space_records > 0 {
        let _ = writeln!(
            s,
            "{} records for spaces the policy does not declare were skipped",
            r.unknown_space_records
        );
    }
    if let (Some(c), Some(stats)) = (&r.certificates, &report.connections_scan) {
        render_certificates(&mut s, c, stats, colour);
    }
    s
}

/// The certificate gate's part of a simulation.
fn render_certificates(
    s: &mut String,
    c: &CertSimulation,
    stats: &eos_logs::ScanStats,
    colour: bool,
) {
    let _ = writeln!(
        s,
        "certificate gate: replayed {} connections from {} lines of {} inputs ({} unusable lines); once the listener verifies:",
        c.connections,
        stats.lines,
        stats.inputs,
        stats.bad.total()
    );
    let mut one = |name: &str, sp: &eos_policy::SpaceCertSimulation, space: bool| {
        let reasons: Vec<String> = sp
            .by_reason
            .iter()
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect();
        let verifies = if sp.verify_at_enforce || !space {
            ""
        } else {
            " (its listener does not verify at enforce)"
        };
        let _ = writeln!(
            s,
            "{name}: {} connections, {} would be refused{verifies}{}",
            sp.connections,
            sp.would_refuse,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
        for e in &sp.examples {
            let _ = writeln!(
                s,
                "  {:<14} {} {} port {} serial {} user {}{}",
                e.reason.as_str(),
                e.time,
                e.client_ip,
                e.listener_port,
                e.serial.as_deref().unwrap_or("-"),
                e.user.as_deref().unwrap_or("-"),
                e.bound_to
                    .as_ref()
                    .map_or(String::new(), |b| format!(" (bound to {b})"))
            );
        }
        if !sp.refused_admins.is_empty() {
            let admins: Vec<&str> = sp.refused_admins.iter().map(|u| u.as_str()).collect();
            let _ = writeln!(
                s,
                "  {} declared administrators would be refused: {}",
                paint(colour, "1;31", "WARNING:"),
                admins.join(", ")
            );
        }
    };
    for (space, sp) in &c.spaces {
        one(space.as_str(), sp, true);
    }
    if c.unattributed.connections > 0 {
        one("(no space found)", &c.unattributed, false);
    }
}
