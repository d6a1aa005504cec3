#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `eos-sec serve` run as a process: a code issued by the CLI registers the
//! caller's address over HTTP, and SIGTERM stops the service cleanly.

use std::io::Read;
use std::process::{Command, Stdio};

mod common;

use common::{PEPPER, free_port, http, wait_until_serving};

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
    let port = free_port();
    let mut child = eos_sec(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_serving(port);
    let body = format!("{{\"code\":\"{code}\"}}");
    let answer = http(
        port,
        &format!(
            "POST /v1/ip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""cidr":"127.0.0.1/32""#), "{answer}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(status.success(), "exit {status}: {logs}");
    assert!(!logs.contains(&code), "the code reached the logs");
}
