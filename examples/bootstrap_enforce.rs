//! How a Rust service runs eos-sec's operations as a library, on the local
//! backend (the state store): bootstrap the example spaces' IPSets from the
//! example usage log and rules, then move `acme` forward one stage at a time
//! (staged, count) and roll the last step back — the work `eos-sec
//! bootstrap`, `eos-sec enforce` and `eos-sec rollback` do, without the CLI.
//!
//! ```sh
//! cargo run -p eos-ops --example bootstrap_enforce [-- STATE-DIR]
//! ```
//!
//! `cargo test -p eos-ops --examples` runs it against a fresh directory.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use eos_identity::SpaceId;
use eos_logs::{Format, Input, ScanOptions, TrustedProxies};
use eos_ops::Backend;
use eos_ops::bootstrap::{BootstrapInput, BootstrapReport, bootstrap};
use eos_ops::enforce::{Edge, enforce, rollback};
use eos_plan::{PlanOptions, RuleFormat, parse_rules};
use eos_policy::Policy;
use eos_policy::enforce::{EnforceOptions, EnforceReport, RollbackOptions, RollbackReport};
use eos_store::Store;

/// Who the audit log says did it.
const ACTOR: &str = "example:bootstrap_enforce";

/// What the run did.
struct Summary {
    bootstrap: BootstrapReport,
    enforced: Vec<EnforceReport>,
    rolled_back: RollbackReport,
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data")
}

fn run(state: &Path) -> Result<Summary, Box<dyn Error>> {
    // Evidence: the example log was written behind load balancers in
    // 10.0.0.0/8 (examples/eos-sec.toml says the same to the CLI).
    let mut scan = ScanOptions::new(Format::Usage);
    scan.trusted_proxies = TrustedProxies::parse(&["10.0.0.0/8"])?;
    let report = eos_logs::scan(vec![Input::path(data().join("usage.jsonl"))], &scan, None)?;
    let text = std::fs::read_to_string(data().join("rules.toml"))?;
    let rules = parse_rules(
        &text,
        RuleFormat::Toml,
        "rules.toml",
        time::OffsetDateTime::now_utc(),
    )?;
    // A few days of a handful of users: fewer requests make a space
    // trustworthy than in production.
    let opts = PlanOptions {
        min_space_requests: 20,
        ..PlanOptions::default()
    }
    .check()?;

    let mut store = Store::open(state)?;
    let backend = Backend::local(state)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bootstrap = rt.block_on(bootstrap(
        &mut store,
        &backend,
        &BootstrapInput {
            rules: &rules,
            observations: &report.observations,
            spaces: &[],
            opts: &opts,
            allow_large_change: false,
            actor: ACTOR,
        },
    ))?;

    let policy = Policy::from_toml(
        &std::fs::read_to_string(data().join("policy.toml"))?,
        "policy.toml",
    )?;
    let space: SpaceId = "acme".parse()?;
    // No `[[gate.listeners]]`: only the Web ACL moves.
    let edge = Edge::none();
    let mut enforced = Vec::new();
    for _ in 0..2 {
        let opts = EnforceOptions {
            policy: &policy,
            space: space.clone(),
            target: None,
            operator_ips: Vec::new(),
            simulation: None,
            force: false,
            actor: ACTOR.to_owned(),
        };
        enforced.push(rt.block_on(enforce(&mut store, &backend, &edge, &opts))?);
    }
    let rolled_back = rt.block_on(rollback(
        &mut store,
        &backend,
        &edge,
        &RollbackOptions {
            policy: &policy,
            space,
            to: None,
            actor: ACTOR.to_owned(),
        },
    ))?;
    Ok(Summary {
        bootstrap,
        enforced,
        rolled_back,
    })
}

fn print(s: &Summary) {
    println!(
        "bootstrap: plan {} on {}",
        s.bootstrap.plan_id,
        s.bootstrap.plan.backend()
    );
    for set in &s.bootstrap.staged {
        println!(
            "  staged {} ({}): {} entries",
            set.name,
            set.outcome,
            set.entries.len()
        );
    }
    for e in &s.enforced {
        println!("enforce {}: {} -> {}", e.space, e.from, e.to);
    }
    let r = &s.rolled_back;
    println!("rollback {}: restored snapshot {}", r.space, r.snapshot);
    for (space, (before, after)) in &r.stage_changes {
        println!("  stage {space}: {before} -> {after}");
    }
}

fn main() -> ExitCode {
    let tmp;
    let state = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => match tempfile::tempdir() {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("error: a temporary state directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match run(&state) {
        Ok(summary) => {
            print(&summary);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use eos_plan::ApplyOutcome;
    use eos_policy::Stage;

    #[test]
    fn bootstraps_enforces_and_rolls_back_on_the_local_backend() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::run(dir.path()).unwrap();
        let staged: Vec<String> = s
            .bootstrap
            .staged
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        assert!(staged.contains(&"eos-acme-v4".to_owned()), "{staged:?}");
        assert!(
            s.bootstrap
                .staged
                .iter()
                .any(|a| a.outcome == ApplyOutcome::Created && !a.entries.is_empty())
        );
        let moves: Vec<(Stage, Stage)> = s.enforced.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(
            moves,
            [(Stage::Off, Stage::Staged), (Stage::Staged, Stage::Count)]
        );
        let acme = "acme".parse().unwrap();
        assert_eq!(
            s.rolled_back.stage_changes.get(&acme),
            Some(&(Stage::Count, Stage::Staged))
        );
    }
}
