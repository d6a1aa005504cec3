//! `cargo xtask bench-peers [--quick] [--only ipset|logs|ca|...]`: eos-sec and
//! the peer tools a user would otherwise reach for, on the same inputs, in the
//! same run. Outputs are compared for equality before any time is reported;
//! times are wall-clock of the whole process (median of several runs) and
//! reported as ratios. The tables are printed as Markdown for
//! docs/PERFORMANCE.md.
//!
//! Each workload lives in its own module and appends its tables to a
//! [`Report`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Options every workload gets.
#[derive(Debug)]
pub struct Bench {
    /// Repository root.
    #[allow(dead_code)] // for workloads that read shipped examples
    pub root: PathBuf,
    /// Smaller inputs and fewer repetitions (a smoke run).
    pub quick: bool,
    /// Where generated inputs go (`bench-data/`, git-ignored).
    pub data_dir: PathBuf,
    /// The release `eos-sec` binary.
    pub eos_sec: PathBuf,
}

/// Markdown sections collected from every workload.
#[derive(Debug, Default)]
pub struct Report {
    sections: Vec<String>,
}

impl Report {
    /// Add a Markdown section.
    pub fn push(&mut self, section: String) {
        self.sections.push(section);
    }
}

/// Run `cmd` `runs` times; the median wall-clock time and the stdout of the
/// last run.
pub fn time_cmd(mut make: impl FnMut() -> Command, runs: usize) -> Result<(Duration, Vec<u8>)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = Vec::new();
    for _ in 0..runs.max(1) {
        let mut cmd = make();
        let start = Instant::now();
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        times.push(start.elapsed());
        if !out.status.success() {
            bail!(
                "{cmd:?} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        last = out.stdout;
    }
    times.sort();
    Ok((times[times.len() / 2], last))
}

/// A shell pipeline as a command.
#[allow(dead_code)] // for workloads whose peers are pipelines
pub fn sh(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-o", "pipefail", "-c", script]);
    c
}

/// Is `tool` on PATH?
pub fn have(tool: &str) -> bool {
    Command::new("bash")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Seconds with millisecond precision.
pub fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// `peer / ours` as "N.N×".
pub fn ratio(ours: Duration, peer: Duration) -> String {
    format!("{:.1}×", peer.as_secs_f64() / ours.as_secs_f64().max(1e-9))
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<&str> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let mut build = crate::cargo();
    build.args(["build", "--release", "-p", "eos-sec"]);
    crate::run_cmd(build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bench = Bench {
        root: root.to_path_buf(),
        quick,
        data_dir: root.join("bench-data"),
        eos_sec: target.join("release/eos-sec"),
    };
    std::fs::create_dir_all(&bench.data_dir)?;
    let mut report = Report::default();
    let wants = |name: &str| only.is_none_or(|o| o == name);
    if wants("ipset") {
        ipset::run(&bench, &mut report)?;
    }
    if wants("logs") {
        logs::run(&bench, &mut report)?;
    }
    if wants("ca") {
        ca::run(&bench, &mut report)?;
    }
    println!("{}", report.sections.join("\n"));
    Ok(())
}

mod ca;
mod ipset;
mod logs;
