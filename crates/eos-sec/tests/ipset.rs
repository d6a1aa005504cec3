//! `eos-sec ipset aggregate`, driven as a process; and the command line
//! itself (`cli`: the `--help` tree, completions, man page, version).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
    // Tests must not pick up a developer's config or colour settings.
    c.env_remove("EOS_SEC_CONFIG")
        .env_remove("EOS_SEC_STATE_DIR")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data")
        .join(name)
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn aggregates_the_shipped_example() {
    let out = bin()
        .args(["ipset", "aggregate"])
        .arg(example("allowlist.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!("aggregate_example_stdout", text(&out.stdout));
    insta::assert_snapshot!(
        "aggregate_example_stderr",
        text(&out.stderr).replace(&example("").display().to_string(), "examples/data/")
    );
}

#[test]
fn json_output() {
    let out = run_stdin(
        &["ipset", "aggregate", "--json"],
        "192.0.2.0\n192.0.2.1\n2001:db8::/127\n192.0.2.9/24\n",
    );
    assert!(out.status.success());
    insta::assert_snapshot!("aggregate_json", text(&out.stdout));
}

#[test]
fn reads_stdin_and_sorts_v4_before_v6() {
    let out = run_stdin(&["ipset", "aggregate"], "2001:db8::1\n10.0.0.1\n10.0.0.0\n");
    assert_eq!(text(&out.stdout), "10.0.0.0/31\n2001:db8::1/128\n");
}

#[test]
fn bad_line_exits_2_with_location_and_no_stdout() {
    let out = run_stdin(
        &["ipset", "aggregate"],
        "192.0.2.1\n10.0.0.0/8\nfe80::1%eth0\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "partial output on stdout: {}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>:3: zone ids are not allowed in an allowlist: `fe80::1%eth0`\n"
    );
}

#[test]
fn bad_line_in_second_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    let bad = dir.path().join("bad.txt");
    std::fs::write(&good, "192.0.2.1\n").unwrap();
    std::fs::write(&bad, "# header\n\n010.1.1.1\n").unwrap();
    let out = bin()
        .args(["ipset", "aggregate"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: leading zero", bad.display())),
        "{err}"
    );
    assert!(err.contains("`010.1.1.1`"), "{err}");
}

#[test]
fn missing_file_is_bad_input() {
    let out = bin()
        .args(["ipset", "aggregate", "/nonexistent/list.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/list.txt: cannot open"));
}

#[test]
fn usage_error_exits_2() {
    let out = bin().args(["ipset", "frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_is_documented() {
    let out = bin()
        .args(["ipset", "aggregate", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!("aggregate_help", text(&out.stdout));
}
