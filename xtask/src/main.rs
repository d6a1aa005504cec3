//! Project automation (the cargo-xtask pattern): `cargo xtask <task>`.
//!
//! - `ci`: everything CI checks — fmt, clippy with warnings denied, tests,
//!   doc tests, examples, tidy; then which outside oracles the tests ran
//!   (moto, openssl, nginx, Chromium, ...), failing under `CI` when one did
//!   not run.
//! - `tidy`: architecture rules — which crate may depend on which, and every
//!   crate described in docs/ARCHITECTURE.md.
//! - `fuzz`: run the cargo-fuzz targets in `fuzz/` for a while each.
//! - `bench-peers`: eos-sec against the tools a user would otherwise reach
//!   for, on the same inputs in the same run (see docs/PERFORMANCE.md).
//! - `bench-authz`: nginx with mutual TLS alone vs nginx + `auth_request`
//!   to `eos-sec authz serve`, same run: requests/s and p99 (oha).
//! - `bench-revocation`: the certificate gate's revocation lag (`ca revoke`
//!   to the CRL delivered by `sync --watch`, on moto): p50/p90/p99/max.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result, bail};

mod bench_authz;
mod bench_peers;
mod bench_revocation;
mod fuzz;
mod oracles;
mod tidy;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy::run(&root()),
        Some("bench-authz") => bench_authz::run(&root(), &args[1..]),
        Some("bench-peers") => bench_peers::run(&root(), &args[1..]),
        Some("bench-revocation") => bench_revocation::run(&root(), &args[1..]),
        Some("fuzz") => fuzz::run(&root(), &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|tidy|fuzz [--target NAME] [--seconds N]|bench-peers [--quick]|bench-authz [--seconds N] [--connections N] [--debug]|bench-revocation [--samples N] [--debug]>"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn root() -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    Path::new(&dir)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    c.current_dir(root());
    c
}

/// Kills the child on drop.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    /// SIGTERM first, so that nginx's master takes its workers down with it
    /// (a SIGKILL of the master alone orphans them), SIGKILL after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `eos-sec` (the binary `bin`) run in `dir` with its state and config
/// there, `EOS_SEC_LOG` unset.
pub(crate) fn eos_sec(bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .current_dir(dir)
        .env("EOS_SEC_STATE_DIR", dir.join("state"))
        .env("EOS_SEC_CONFIG", dir.join("eos-sec.toml"))
        .env_remove("EOS_SEC_LOG");
    c
}

/// A port free on 127.0.0.1 now.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Run `cmd`; its stdout, or an error with its stderr.
pub(crate) fn check(mut cmd: Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn run_cmd(mut cmd: Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn ci() -> Result<()> {
    let locked = std::env::var_os("CI").is_some();
    let with_locked = |mut c: Command| {
        if locked {
            c.arg("--locked");
        }
        c
    };
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run_cmd(fmt)?;
    tidy::run(&root())?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets"]);
    let mut clippy = with_locked(clippy);
    clippy.args(["--", "-D", "warnings"]);
    run_cmd(clippy)?;
    let log = oracles::log_path();
    oracles::reset(&log)?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--all-targets"]);
    test.env(oracles::LOG_ENV, &log);
    run_cmd(with_locked(test))?;
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    run_cmd(with_locked(doc))?;
    oracles::report(&log, std::env::var_os("CI").is_some())
}
