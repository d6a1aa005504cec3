#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `eos-sec serve` run as a process: a code issued by the CLI registers the
//! caller's address over HTTP, and SIGTERM stops the service cleanly.

use std::process::Command;

mod common;

use common::{PEPPER, Serving};

fn eos_sec(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
    c.current_dir(dir)
        .env("EOS_SEC_STATE_DIR", dir.join("state"))
        .env("EOS_SEC_PEPPER", PEPPER)
        .env_remove("EOS_SEC_CONFIG");
    c
}

#[test]
fn serve_registers_an_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let issued = eos_sec(dir.path())
        .args([
            "code",
            "issue",
            "--space",
            "acme",
            "--user",
            "alice",
            "--purpose",
            "register-ip",
        ])
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let code = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let serving = Serving::start(eos_sec(dir.path()));
    let answer = serving.post_json("/v1/ip", &format!("{{\"code\":\"{code}\"}}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""cidr":"127.0.0.1/32""#), "{answer}");
    let (status, logs) = serving.stop();
    assert!(status.success(), "exit {status}: {logs}");
    assert!(!logs.contains(&code), "the code reached the logs");
}
