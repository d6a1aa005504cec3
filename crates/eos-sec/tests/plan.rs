//! `eos-sec rules`, `plan` and `apply` on the local backend, run as a process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(state: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_eos-sec"))
        .args(args)
        .env("EOS_SEC_STATE_DIR", state)
        .env("EOS_SEC_CONFIG", state.join("none.toml"))
        .env_remove("NO_COLOR")
        .current_dir(state)
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    dir
}

#[test]
fn rules_import_in_every_format_agrees() {
    let mut listed = Vec::new();
    for ext in ["toml", "json", "csv"] {
        let dir = setup();
        let file = examples().join(format!("rules.{ext}"));
        let o = run(dir.path(), &["rules", "import", file.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stdout.contains("4 added"), "{}", o.stdout);
        let o = run(dir.path(), &["--json", "rules", "list"]);
        let mut v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        for r in v.as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("id");
        }
        listed.push(v);
    }
    assert_eq!(listed[0], listed[1]);
    assert_eq!(listed[0], listed[2]);
}

#[test]
fn rules_add_list_remove() {
    let dir = setup();
    let d = dir.path();
    let o = run(
        d,
        &[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            "203.0.113.7/24",
            "--label",
            "x",
            "--declared-by",
            "alice",
        ],
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("host bits"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    let o = run(
        d,
        &[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            "0.0.0.0/0",
            "--label",
            "x",
            "--declared-by",
            "alice",
        ],
    );
    assert_eq!(o.code, 2);
    let o = run(
        d,
        &[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            "203.0.113.7",
            "--label",
            "Desk 7",
            "--declared-by",
            "alice",
            "--expires",
            "2030-01-01T00:00:00Z",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "added: acme 203.0.113.7/32 (Desk 7)\n");
    let o = run(d, &["rules", "list"]);
    assert!(o.stdout.contains("203.0.113.7/32"), "{}", o.stdout);
    let o = run(
        d,
        &[
            "rules",
            "remove",
            "--space",
            "acme",
            "203.0.113.7/32",
            "198.51.100.0/24",
        ],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("nothing was removed"), "{}", o.stderr);
    let o = run(d, &["rules", "remove", "--space", "acme", "203.0.113.7"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(run(d, &["rules", "list"]).stdout, "no rules\n");
}

#[test]
fn rules_import_errors_name_file_and_line() {
    let dir = setup();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "space,cidr,label,declared_by,created,expires\nacme,10.0.0.0/8,a,bob,,\nacme,10.1.2.3/16,b,bob,,\n").unwrap();
    let o = run(dir.path(), &["rules", "import", bad.to_str().unwrap()]);
    assert_eq!(o.code, 2);
    // file:line:column of the offending field (the cidr, column 6).
    assert!(o.stderr.contains("bad.csv:3:6: cidr: "), "{}", o.stderr);
    assert_eq!(
        run(dir.path(), &["rules", "list"]).stdout,
        "no rules\n",
        "nothing half-imported"
    );
}

#[test]
fn plan_apply_cycle_on_the_local_backend() {
    let dir = setup();
    let d = dir.path();
    let rules = examples().join("rules.toml");
    assert_eq!(
        run(d, &["rules", "import", rules.to_str().unwrap()]).code,
        0
    );
    let o = run(d, &["plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    insta::assert_snapshot!("plan_first", o.stdout);

    // apply without --yes off a terminal is refused.
    let o = run(d, &["apply"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--yes"), "{}", o.stderr);

    let o = run(d, &["apply", "--yes"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    insta::assert_snapshot!(
        "apply_first",
        o.stdout
            .lines()
            .filter(|l| l.contains(':'))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let o = run(d, &["plan"]);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);

    // Removing the /32 rule takes 1 of acme's 17 IPv4 addresses (5.9%):
    // under the 10% guard.
    let o = run(
        d,
        &["rules", "remove", "--space", "acme", "198.51.100.200/32"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan_file = d.join("p.json");
    let o = run(
        d,
        &[
            "plan",
            "--space",
            "acme",
            "--out",
            plan_file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("- 198.51.100.200/32"), "{}", o.stdout);

    // Removing the /28 as well would remove most of the set: guarded. The
    // saved plan is refused too: it is applied only as planning makes it
    // now, and planning now refuses.
    let remove_28 = ["rules", "remove", "--space", "acme", "203.0.113.0/28"];
    assert_eq!(run(d, &remove_28).code, 0);
    let o = run(d, &["plan", "--space", "acme"]);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert!(o.stderr.contains("[large-change]"), "{}", o.stderr);
    assert!(o.stderr.contains("--allow-large-change"), "{}", o.stderr);
    let o = run(d, &["apply", plan_file.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("[large-change]"), "{}", o.stderr);

    // Declared again, planning makes exactly the saved plan: it applies.
    let o = run(
        d,
        &[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            "203.0.113.0/28",
            "--label",
            "HQ office egress",
            "--declared-by",
            "alice@acme.example",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = run(d, &["--json", "apply", plan_file.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["applied"][0]["removed"][0], "198.51.100.200/32");
    // ... but only once: applied again, it is stale.
    let o = run(d, &["apply", plan_file.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains(
            "[plan-stale] eos-acme-v4 198.51.100.200/32: the plan removes it; it is not in the set"
        ),
        "{}",
        o.stderr
    );
    assert!(o.stdout.is_empty(), "{}", o.stdout);

    assert_eq!(run(d, &remove_28).code, 0);
    let o = run(d, &["plan", "--space", "acme", "--allow-large-change"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("allowed by --allow-large-change"),
        "{}",
        o.stdout
    );
}

#[test]
fn edited_saved_plan_is_rechecked() {
    let dir = setup();
    let d = dir.path();
    let rules = examples().join("rules.json");
    assert_eq!(
        run(d, &["rules", "import", rules.to_str().unwrap()]).code,
        0
    );
    let plan_file = d.join("p.json");
    assert_eq!(
        run(d, &["plan", "--out", plan_file.to_str().unwrap()]).code,
        0
    );
    let text = std::fs::read_to_string(&plan_file).unwrap();
    std::fs::write(&plan_file, text.replace("192.0.2.64/27", "192.0.0.0/8")).unwrap();
    let o = run(d, &["apply", plan_file.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    // The guard list is printed once.
    assert_eq!(
        o.stderr.matches("[broad-prefix]").count(),
        1,
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("192.0.0.0/8"), "{}", o.stderr);
}
