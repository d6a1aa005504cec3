//! `eos-sec policy ...` as a process, on the shipped example policy, sets
//! and request records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data")
}

fn eos(args: &[&str]) -> Output {
    let state = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_eos-sec"))
        .args(args)
        .current_dir(examples())
        .env("EOS_SEC_STATE_DIR", state.path())
        .env_remove("EOS_SEC_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

const SETS: [&str; 4] = [
    "--set",
    "acme=sets-acme.txt",
    "--set",
    "globex=sets-globex.txt",
];

#[test]
fn compile_prints_web_acl_json() {
    let o = eos(&[
        "policy",
        "compile",
        "--policy",
        "policy.toml",
        "--space",
        "acme",
        "--stage",
        "count",
    ]);
    let out = stdout(&o);
    insta::assert_snapshot!("compile_acme_count", out);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(stderr.contains("# acme: mode ip, stage count"), "{stderr}");
}

#[test]
fn compile_json_has_capacity_and_listeners() {
    let out = stdout(&eos(&[
        "--json",
        "policy",
        "compile",
        "--policy",
        "policy.toml",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["capacity"]["wcu"], 727);
    assert_eq!(
        v["web_acl"]["DefaultAction"],
        serde_json::json!({"Allow": {}})
    );
    assert!(v["listeners"].is_array());
}

#[test]
fn eval_reports_verdict_and_rule() {
    let mut args = vec![
        "policy",
        "eval",
        "--policy",
        "policy.toml",
        "--space",
        "acme",
        "--stage",
        "enforce",
        "--ip",
        "203.0.113.50",
    ];
    args.extend(SETS);
    let out = stdout(&eos(&args));
    insta::assert_snapshot!("eval_acme_blocked", out);
    let mut args = vec![
        "--json",
        "policy",
        "eval",
        "--policy",
        "policy.toml",
        "--space",
        "acme",
        "--stage",
        "enforce",
        "--ip",
        "2001:db8:10::5",
    ];
    args.extend(SETS);
    let v: serde_json::Value = serde_json::from_str(&stdout(&eos(&args))).unwrap();
    assert_eq!(v["now"]["verdict"], "ALLOW");
    assert_eq!(v["now"]["rule"], "eos-acme-ip-allow");
}

#[test]
fn simulate_shipped_records() {
    let mut args = vec![
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        "requests.jsonl",
    ];
    args.extend(SETS);
    let out = stdout(&eos(&args));
    insta::assert_snapshot!("simulate", out);
}

#[test]
fn rejects_bad_input_with_exit_2() {
    let o = eos(&[
        "policy",
        "eval",
        "--policy",
        "policy.toml",
        "--space",
        "nosuch",
        "--ip",
        "192.0.2.1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("space `nosuch` is not declared"));
    let o = eos(&[
        "policy",
        "eval",
        "--policy",
        "policy.toml",
        "--space",
        "acme",
        "--ip",
        "192.0.2.300",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = eos(&["policy", "compile", "--policy", "requests.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\"space\":\"acme\",\"ip\":\"x\"}\n").unwrap();
    let o = eos(&[
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        bad.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(":1: ip `x`"));
}
