//! Which outside oracles the tests ran. A test that needs one (moto's
//! server, openssl, nginx, Chromium, PostgreSQL, ...) appends a line `NAME
//! ran` or `NAME skipped` to the file named by `EOS_SEC_ORACLE_LOG`
//! (`eos_store::testing::record_oracle`, `eos_aws::moto::record_oracle`);
//! `cargo xtask ci` sets it, prints a table at the end, and under `CI`
//! fails when an oracle was skipped or never ran at all — a skip inside a
//! passing test is otherwise hidden by the test harness, and a test that
//! stopped calling its oracle would pass silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The variable the tests read.
pub const LOG_ENV: &str = "EOS_SEC_ORACLE_LOG";

/// The oracles CI must see run (`.ci/run` installs each).
const EXPECTED: &[&str] = &[
    "moto",
    "boto3",
    "openssl",
    "pkilint",
    "curl",
    "nginx",
    "chromium",
    "postgresql",
    "caddy",
];

/// Where the log goes: beside the build output.
pub fn log_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        crate::root().join(target)
    };
    target.join("oracles.log")
}

/// Start an empty log.
pub fn reset(log: &Path) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(log, "").with_context(|| format!("writing {}", log.display()))
}

/// Per oracle: (runs, skips).
fn tally(text: &str) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> =
        EXPECTED.iter().map(|n| ((*n).to_owned(), (0, 0))).collect();
    for line in text.lines() {
        let Some((name, what)) = line.trim().rsplit_once(' ') else {
            continue;
        };
        let e = out.entry(name.to_owned()).or_default();
        match what {
            "ran" => e.0 += 1,
            _ => e.1 += 1,
        }
    }
    out
}

/// The table, and what is wrong under CI (skipped, or expected and never
/// run).
fn summarise(text: &str) -> (String, Vec<String>) {
    let mut table = format!("{:<12} {:>6} {:>8}\n", "oracle", "ran", "skipped");
    let mut problems = Vec::new();
    for (name, (ran, skipped)) in tally(text) {
        table.push_str(&format!("{name:<12} {ran:>6} {skipped:>8}\n"));
        if skipped > 0 {
            problems.push(format!("{name}: skipped {skipped} time(s)"));
        } else if ran == 0 && EXPECTED.contains(&name.as_str()) {
            problems.push(format!("{name}: no test ran it"));
        }
    }
    (table, problems)
}

/// Print the table; under CI, fail on any problem.
pub fn report(log: &Path, ci: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let (table, problems) = summarise(&text);
    eprintln!(
        "outside oracles used by the tests ({}):\n{table}",
        log.display()
    );
    if problems.is_empty() {
        return Ok(());
    }
    if ci {
        bail!("oracles missing under CI:\n  {}", problems.join("\n  "));
    }
    eprintln!("warning: {}", problems.join("; "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oracle_that_never_ran_or_was_skipped_is_a_problem() {
        let mut log = String::new();
        for name in EXPECTED {
            log.push_str(&format!("{name} ran\n"));
        }
        let (table, problems) = summarise(&log);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(table.contains("moto"));
        let (_, problems) = summarise("moto ran\nopenssl skipped\n");
        assert!(problems.contains(&"openssl: skipped 1 time(s)".to_owned()));
        assert!(problems.contains(&"nginx: no test ran it".to_owned()));
        assert!(!problems.iter().any(|p| p.starts_with("moto")));
    }
}
