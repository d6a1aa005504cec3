//! `eos-sec logs scan`, driven as a process on the shipped examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary, run from the workspace root so locations read
/// `examples/data/...`.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
    c.env_remove("EOS_SEC_CONFIG")
        .env_remove("EOS_SEC_STATE_DIR")
        .env("NO_COLOR", "1")
        .current_dir(root());
    c
}

fn scan(args: &[&str]) -> Output {
    bin()
        .args(["logs", "scan"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "", "nothing on stderr off a terminal");
    text(&out.stdout)
}

#[test]
fn usage_human() {
    let out = scan(&["--format", "usage", "examples/data/usage.jsonl"]);
    insta::assert_snapshot!(ok(&out));
}

#[test]
fn usage_human_with_trusted_proxy() {
    let out = scan(&[
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.0/8",
        "examples/data/usage.jsonl",
    ]);
    insta::assert_snapshot!(ok(&out));
}

#[test]
fn usage_json() {
    let out = scan(&[
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--json",
        "examples/data/usage.jsonl",
    ]);
    let body = ok(&out);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["format"], "usage");
    insta::assert_snapshot!(body);
}

#[test]
fn usage_csv() {
    let out = scan(&[
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--csv",
        "examples/data/usage.jsonl",
    ]);
    insta::assert_snapshot!(ok(&out));
}

#[test]
fn alb_human_and_csv() {
    let out = scan(&["--format", "alb", "examples/data/alb.log"]);
    insta::assert_snapshot!("alb_human", ok(&out));
    let out = scan(&["--format", "alb", "--csv", "examples/data/alb.log"]);
    insta::assert_snapshot!("alb_csv", ok(&out));
}

#[test]
fn cloudfront_human_with_trusted_proxy() {
    let out = scan(&[
        "--format",
        "cloudfront",
        "--trusted-proxy",
        "130.176.0.0/16",
        "examples/data/cloudfront.log",
    ]);
    insta::assert_snapshot!(ok(&out));
}

#[test]
fn waf_human_and_json() {
    let out = scan(&["--format", "waf", "examples/data/waf.jsonl"]);
    insta::assert_snapshot!("waf_human", ok(&out));
    let out = scan(&["--format", "waf", "--json", "examples/data/waf.jsonl"]);
    insta::assert_snapshot!("waf_json", ok(&out));
}

#[test]
fn aws_doc_examples_through_the_cli() {
    let out = scan(&[
        "--format",
        "alb",
        "--csv",
        "crates/eos-logs/tests/data/aws/alb-doc-examples.log",
    ]);
    insta::assert_snapshot!("alb_doc_csv", ok(&out));
    let out = scan(&[
        "--format",
        "cloudfront",
        "--csv",
        "crates/eos-logs/tests/data/aws/cloudfront-doc-example.log",
    ]);
    insta::assert_snapshot!("cloudfront_doc_csv", ok(&out));
    let out = scan(&[
        "--format",
        "waf",
        "--csv",
        "crates/eos-logs/tests/data/aws/waf-doc-examples.jsonl",
    ]);
    insta::assert_snapshot!("waf_doc_csv", ok(&out));
}

#[test]
fn time_window_and_thresholds() {
    let out = scan(&[
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--since",
        "2026-11-03",
        "--until",
        "2026-11-04T00:00:00Z",
        "--min-requests",
        "2",
        "--csv",
        "examples/data/usage.jsonl",
    ]);
    insta::assert_snapshot!(ok(&out));
}

#[test]
fn strict_stops_at_the_first_bad_line_with_exit_2() {
    let out = scan(&["--format", "usage", "--strict", "examples/data/usage.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    insta::assert_snapshot!(text(&out.stderr));
}

#[test]
fn gzip_from_stdin_is_the_same_as_the_file() {
    let plain = std::fs::read(root().join("examples/data/waf.jsonl")).unwrap();
    let gz = gzip(&plain);
    let mut child = bin()
        .args(["logs", "scan", "--format", "waf", "--csv", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    let from_file = scan(&["--format", "waf", "--csv", "examples/data/waf.jsonl"]);
    assert_eq!(ok(&from_stdin), ok(&from_file));
}

/// gzip through the system `gzip` (an outside implementation).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip on PATH");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

#[test]
fn bad_arguments_exit_2() {
    let out = scan(&["--format", "nginx", "examples/data/usage.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let out = scan(&["--format", "usage", "examples/data/no-such-file.log"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("examples/data/no-such-file.log: no such file"),
        "{}",
        text(&out.stderr)
    );
    let out = scan(&[
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.300/8",
        "examples/data/usage.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = scan(&[
        "--format",
        "usage",
        "--since",
        "2026-11-04",
        "--until",
        "2026-11-03",
        "examples/data/usage.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("time window is empty"));
}

#[test]
fn config_section_sets_trusted_proxies_and_save_feeds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eos-sec.toml");
    std::fs::write(
        &config,
        "[logs]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[logs.evidence]\nmin_distinct_days = 2\n",
    )
    .unwrap();
    let out = bin()
        .args(["logs", "scan", "--format", "usage", "--save", "--csv"])
        .arg("examples/data/usage.jsonl")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let csv = ok(&out);
    assert!(csv.contains("acme,203.0.113.10,"), "{csv}");
    assert!(!csv.contains("10.0.1."), "proxies resolved away: {csv}");
    let store = eos_store::Store::open(&dir.path().join("state")).unwrap();
    let stored = eos_store::rules::load_observations(store.conn(), &[]).unwrap();
    assert_eq!(stored.len(), csv.lines().count() - 1);

    std::fs::write(&config, "[logs]\ntrusted_proxy = [\"10.0.0.0/8\"]\n").unwrap();
    let out = bin()
        .args(["logs", "scan", "--format", "usage"])
        .arg("examples/data/usage.jsonl")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown field `trusted_proxy`"));
}

#[test]
fn cloudwatch_source_through_the_cli() {
    let Some(moto) = eos_aws::moto::MotoServer::start() else {
        return;
    };
    let events = common::put_example_usage_log(&moto, "/eos/usage");
    let cloud = |extra: &[&str]| {
        bin()
            .args([
                "logs",
                "scan",
                "--format",
                "usage",
                "--trusted-proxy",
                "10.0.0.0/8",
            ])
            .args(extra)
            .args(["--region", "us-east-1", "--endpoint-url", &moto.endpoint()])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    };
    let out = cloud(&["--csv", "cloudwatch:///eos/usage"]);
    let file = scan(&[
        "--format",
        "usage",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--csv",
        "examples/data/usage.jsonl",
    ]);
    assert_eq!(ok(&out), ok(&file));

    let out = cloud(&["cloudwatch:///eos/usage"]);
    assert!(
        ok(&out).contains("  cloudwatch:///eos/usage:6: bad_forwarded_for"),
        "{}",
        text(&out.stdout)
    );

    // moto ignores `stats`: one row per event, none of them an aggregate.
    // That is said as such, exit 1 (the answer, not the user, is wrong),
    // with --strict or not — never a report of unusable rows and exit 0.
    for strict in [&[][..], &["--strict"]] {
        let out = cloud(
            &[
                &["--insights", "--json"],
                strict,
                &["cloudwatch:///eos/usage"],
            ]
            .concat(),
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "");
        let expected = format!(
            "cloudwatch:///eos/usage: the Logs Insights answer is not an aggregate: {events} rows with the fields `@ptr`"
        );
        assert!(
            text(&out.stderr).contains(&expected),
            "{}",
            text(&out.stderr)
        );
    }

    let out = cloud(&["cloudwatch:///no/such/group"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("log group `/no/such/group` not found"));

    let out = cloud(&["--insights", "examples/data/usage.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let out = scan(&["--format", "alb", "--insights", "cloudwatch:///eos/usage"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("usage log only"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn csv_without_observations_is_the_header_alone() {
    let out = scan(&[
        "--format",
        "usage",
        "--min-requests",
        "1000000",
        "--csv",
        "examples/data/usage.jsonl",
    ]);
    assert_eq!(
        ok(&out),
        "space,ip,requests,first_seen,last_seen,distinct_days,distinct_users,example_users,s1xx,s2xx,s3xx,s4xx,s5xx,waf_blocked,flag\n"
    );
}

#[test]
fn a_scan_with_no_usable_line_exits_2_naming_what_to_check() {
    // The wrong --format: every line unusable.
    let out = scan(&["--format", "alb", "--csv", "examples/data/usage.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    insta::assert_snapshot!(text(&out.stderr));
    // Told otherwise: the report of bad lines, exit 0.
    let out = scan(&[
        "--format",
        "alb",
        "--allow-unusable",
        "examples/data/usage.jsonl",
    ]);
    assert!(ok(&out).contains("unusable lines"));
}

/// `--insights-wait` takes the one duration grammar, as `--write-interval`
/// and the config file's durations do (it took bare seconds before).
#[test]
fn insights_wait_takes_the_duration_grammar() {
    let file = ["--format", "usage", "examples/data/usage.jsonl"];
    for wait in ["5m", "90s", "1h 30m"] {
        let out = scan(&[&["--insights-wait", wait][..], &file].concat());
        ok(&out);
    }
    let out = scan(&[&["--insights-wait", "300"][..], &file].concat());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--insights-wait"), "{err}");
    assert!(err.contains("duration `300`"), "{err}");
}
