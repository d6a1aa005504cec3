//! `cargo xtask fuzz [--target NAME] [--seconds N]`: run every cargo-fuzz
//! target in `fuzz/` (or one) for N seconds each (default 60), seeding an
//! empty corpus from the shipped examples so the fuzzer starts from real
//! lines, and fail if any target finds a crash (its input is left in
//! `fuzz/artifacts/TARGET/`).
//!
//! Needs `cargo install cargo-fuzz`. The fuzz build uses unstable flags
//! (`-Zsanitizer`); with only a stable toolchain installed this sets
//! `RUSTC_BOOTSTRAP=1` for that build, as cargo-fuzz's own docs allow.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Seeds per target, relative to the workspace root.
const SEEDS: &[(&str, &[&str])] = &[
    (
        "csr",
        &[
            "examples/data/csr/p256.csr",
            "examples/data/csr/ca-request.csr",
            "examples/data/csr/rsa-pss.csr",
        ],
    ),
    ("logs_usage", &["examples/data/usage.jsonl"]),
    (
        "logs_alb",
        &[
            "examples/data/alb.log",
            "crates/eos-logs/tests/data/aws/alb-doc-examples.log",
        ],
    ),
    (
        "logs_alb_connection",
        &["crates/eos-logs/tests/data/aws/alb-connection-doc-examples.log"],
    ),
    (
        "logs_cloudfront",
        &[
            "examples/data/cloudfront.log",
            "crates/eos-logs/tests/data/aws/cloudfront-doc-example.log",
        ],
    ),
    (
        "logs_ranges",
        &[
            "examples/data/usage.jsonl",
            "examples/data/alb.log",
            "examples/data/waf.jsonl",
        ],
    ),
    (
        "logs_waf",
        &[
            "examples/data/waf.jsonl",
            "crates/eos-logs/tests/data/aws/waf-doc-examples.jsonl",
        ],
    ),
];

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut only: Option<String> = None;
    let mut seconds: u64 = 60;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => only = Some(it.next().context("--target needs a NAME")?.clone()),
            "--seconds" => {
                let n = it.next().context("--seconds needs a number")?;
                seconds = n
                    .parse()
                    .with_context(|| format!("--seconds {n}: not a number"))?;
            }
            other => bail!(
                "unknown argument {other}; usage: cargo xtask fuzz [--target NAME] [--seconds N]"
            ),
        }
    }
    let fuzz_dir = root.join("fuzz");
    let targets = list(&fuzz_dir)?;
    let chosen: Vec<String> = match &only {
        Some(t) if targets.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t}; targets: {}", targets.join(", ")),
        None => targets,
    };
    let mut failed = Vec::new();
    for target in &chosen {
        seed(root, &fuzz_dir, target)?;
        let mut cmd = fuzz_cmd(&fuzz_dir);
        cmd.args(["run", target, "--", &format!("-max_total_time={seconds}")])
            .arg("-max_len=65536")
            .arg("-print_final_stats=1");
        eprintln!("$ {cmd:?}");
        let status = cmd
            .status()
            .with_context(|| format!("running fuzz target {target}"))?;
        if !status.success() {
            failed.push(target.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs in fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    eprintln!(
        "fuzz: {} target(s), {seconds} s each, no crash",
        chosen.len()
    );
    Ok(())
}

fn fuzz_cmd(fuzz_dir: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    c.arg("fuzz")
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1");
    c
}

fn list(fuzz_dir: &Path) -> Result<Vec<String>> {
    let out = fuzz_cmd(fuzz_dir)
        .arg("list")
        .output()
        .context("running `cargo fuzz list`")?;
    if !out.status.success() {
        bail!(
            "`cargo fuzz list` failed (is cargo-fuzz installed? `cargo install cargo-fuzz`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Copy the target's seed files into an empty corpus directory.
fn seed(root: &Path, fuzz_dir: &Path, target: &str) -> Result<()> {
    let Some((_, files)) = SEEDS.iter().find(|(t, _)| *t == target) else {
        return Ok(());
    };
    let corpus = fuzz_dir.join("corpus").join(target);
    let empty = std::fs::read_dir(&corpus).map_or(true, |mut d| d.next().is_none());
    if !empty {
        return Ok(());
    }
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    for f in *files {
        let from = root.join(f);
        let name = Path::new(f)
            .file_name()
            .context("seed file name")?
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&from, corpus.join(format!("seed-{name}")))
            .with_context(|| format!("seeding {target} from {}", from.display()))?;
    }
    Ok(())
}
