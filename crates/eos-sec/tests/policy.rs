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
fn simulate_shipped_usage_log() {
    let mut args = vec![
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        "usage.jsonl",
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.0/8",
    ];
    args.extend(SETS);
    let out = stdout(&eos(&args));
    insta::assert_snapshot!("simulate_usage", out);
    let mut args = vec![
        "--json",
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        "usage.jsonl",
    ];
    args.extend(SETS);
    let v: serde_json::Value = serde_json::from_str(&stdout(&eos(&args))).unwrap();
    // Without the trusted-proxy rule every client is the load balancer:
    // the declared administrator is among the blocked.
    assert_eq!(
        v["spaces"]["acme"]["blocked_admins"],
        serde_json::json!(["alice@acme.example"])
    );
    assert!(v["scan"]["records"].as_u64().unwrap() > 40);
}

#[test]
fn simulate_reads_sets_from_the_backend_by_default() {
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eos-sec"))
            .args(args)
            .current_dir(examples())
            .env("EOS_SEC_STATE_DIR", state.path())
            .env_remove("EOS_SEC_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let simulate = [
        "--json",
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        "usage.jsonl",
        "--trusted-proxy",
        "10.0.0.0/8",
    ];
    let before: serde_json::Value = serde_json::from_str(&stdout(&run(&simulate))).unwrap();
    // No sets on the backend yet: every acme request would be blocked.
    assert_eq!(
        before["spaces"]["acme"]["would_block"],
        before["spaces"]["acme"]["requests"]
    );
    stdout(&run(&["rules", "import", "rules.toml"]));
    stdout(&run(&["apply", "--yes"]));
    let after: serde_json::Value = serde_json::from_str(&stdout(&run(&simulate))).unwrap();
    // 203.0.113.10 (alice, bob) is in the applied 203.0.113.0/28.
    assert_eq!(
        after["spaces"]["acme"]["blocked_users"],
        serde_json::json!(["carol@acme.example", "dave@acme.example"])
    );
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
    let o = eos(&["policy", "compile", "--policy", "usage.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    let o = eos(&[
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        "no-such-file.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-file.jsonl"));
    let o = eos(&[
        "policy",
        "simulate",
        "--policy",
        "policy.toml",
        "--logs",
        "usage.jsonl",
        "--format",
        "nginx",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
