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

/// `-q`/`-v` set the log level: `serve` logs at info by default (its
/// warnings about what it cannot serve among them); `-q` logs nothing, while
/// the failure itself is still reported; `-v` logs more, never less.
#[test]
fn quiet_and_verbose_move_the_log_level() {
    let dir = tempfile::tempdir().unwrap();
    // A port that is taken: serve logs its start-up lines, then fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let run = |flags: &[&str]| {
        let out = eos_sec(dir.path())
            .env_remove("EOS_SEC_LOG")
            .args(flags)
            .args(["serve", "--listen", &listen])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap()
    };
    let default = run(&[]);
    assert!(default.contains(r#""level":"WARN""#), "{default}");
    let quiet = run(&["-q"]);
    assert_eq!(
        quiet,
        format!("error: cannot listen on {listen}: Address already in use (os error 98)\n")
    );
    assert_eq!(run(&["--quiet"]), quiet);
    assert_eq!(
        run(&["-vv"]).matches(r#""level":"WARN""#).count(),
        default.matches(r#""level":"WARN""#).count()
    );
    // EOS_SEC_LOG decides when set.
    let out = eos_sec(dir.path())
        .env("EOS_SEC_LOG", "warn")
        .args(["-q", "serve", "--listen", &listen])
        .output()
        .unwrap();
    let logged = String::from_utf8(out.stderr).unwrap();
    assert!(logged.contains(r#""level":"WARN""#), "{logged}");
}
