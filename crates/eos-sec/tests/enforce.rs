//! `eos-sec enforce` and `rollback` on the local backend, run as a process:
//! staged → count → enforce → rollback with the shipped example policy and
//! rules, the guards' refusals (exit 2, stable codes) and the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

thread_local! {
    /// More environment for the process under test: AWS for the moto
    /// test, the PostgreSQL store's URL for the PostgreSQL test.
    static EXTRA_ENV: RefCell<Option<Vec<(&'static str, String)>>> = const { RefCell::new(None) };
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(state: &Path, args: &[&str]) -> Out {
    let policy = examples().join("policy.toml");
    let mut full: Vec<&str> = Vec::new();
    let cmd = args
        .iter()
        .position(|a| !a.starts_with("--json"))
        .unwrap_or(0);
    full.extend(&args[..=cmd]);
    if matches!(args[cmd], "enforce" | "rollback") {
        full.extend(["--policy", policy.to_str().unwrap()]);
    }
    full.extend(&args[cmd + 1..]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
    if let Some(moto) = EXTRA_ENV.with(|m| m.borrow().clone()) {
        cmd.envs(moto);
    }
    let out = cmd
        .args(&full)
        .env("EOS_SEC_STATE_DIR", state)
        .env("EOS_SEC_CONFIG", state.join("none.toml"))
        .env("NO_COLOR", "1")
        .env("USER", "operator")
        .current_dir(state)
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn ok(o: Out) -> String {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.stdout
}

/// A state directory with the example rules (plus the acme
/// administrator's declared address) applied to the local backend.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("none.toml"), "").unwrap();
    let rules = examples().join("rules.toml");
    ok(run(d, &["rules", "import", rules.to_str().unwrap()]));
    ok(run(
        d,
        &[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            "198.51.100.10",
            "--label",
            "alice home",
            "--declared-by",
            "alice@acme.example",
        ],
    ));
    ok(run(d, &["apply", "--yes"]));
    dir
}

const OPERATOR: [&str; 2] = ["--operator-ip", "203.0.113.5"];

/// `enforce --space acme` `times` times; the outputs.
fn forward(d: &Path, times: usize) -> String {
    let mut outs = String::new();
    for _ in 0..times {
        let mut args = vec!["enforce", "--space", "acme"];
        args.extend(OPERATOR);
        outs.push_str(&ok(run(d, &args)));
    }
    outs
}

#[test]
fn staged_count_enforce_rollback_from_the_cli() {
    let dir = setup();
    let d = dir.path();
    let outs = forward(d, 3);
    insta::assert_snapshot!("enforce_three_stages", outs);

    let mut args = vec!["--json", "enforce", "--space", "acme"];
    args.extend(OPERATOR);
    let o = run(d, &args);
    assert_eq!(o.code, 2, "already enforced: {}", o.stderr);
    assert!(
        o.stderr.contains("already at stage enforce"),
        "{}",
        o.stderr
    );

    let out = ok(run(d, &["rollback", "--space", "acme"]));
    insta::assert_snapshot!("rollback", out);
    let v: serde_json::Value =
        serde_json::from_str(&ok(run(d, &["--json", "rollback", "--space", "acme"]))).unwrap();
    assert_eq!(v["steps"], serde_json::json!([]), "idempotent");
    assert_eq!(v["stage_changes"], serde_json::json!({}));

    // Forward again from count: the same two steps.
    let mut args = vec!["--json", "enforce", "--space", "acme", "--stage", "enforce"];
    args.extend(OPERATOR);
    let out = ok(run(d, &args));
    insta::assert_snapshot!("enforce_json", out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from"], "count");
    assert_eq!(v["steps"][0]["kind"], "rules");
    assert_eq!(v["steps"][1]["kind"], "default-block");
    assert_eq!(v["steps"][1]["default_action"], "BLOCK");
}

#[test]
fn rejects_each_guard_with_its_code() {
    let dir = setup();
    let d = dir.path();
    forward(d, 2);
    // The operator's own address is outside the set.
    let o = run(
        d,
        &[
            "--json",
            "enforce",
            "--space",
            "acme",
            "--operator-ip",
            "192.0.2.99",
        ],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["status"], "refused", "{v}");
    assert_eq!(v["refusals"][0]["code"], "enforce-operator-outside-set");
    assert!(
        v["refusals"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("192.0.2.99")),
        "{v}"
    );
    assert!(o.stderr.contains("192.0.2.99"), "{}", o.stderr);
    // No operator address at all.
    let o = run(d, &["enforce", "--space", "acme"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("enforce-operator-unknown"),
        "{}",
        o.stderr
    );
    // A declared administrator blocked in the shipped usage log (read
    // without the trusted-proxy rule, every client is the load balancer).
    let usage = examples().join("usage.jsonl");
    let mut args = vec![
        "enforce",
        "--space",
        "acme",
        "--logs",
        usage.to_str().unwrap(),
    ];
    args.extend(OPERATOR);
    let o = run(d, &args);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert!(
        o.stderr.contains("enforce-simulate-blocks-admins")
            && o.stderr.contains("alice@acme.example"),
        "{}",
        o.stderr
    );
    // --force overrides, and says so.
    args.push("--force");
    let out = ok(run(d, &args));
    assert!(
        out.contains("FORCED: [enforce-simulate-blocks-admins]"),
        "{out}"
    );
    let o = run(d, &["rollback", "--space", "acme", "--to", "999"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no snapshot 999"), "{}", o.stderr);
}

#[test]
fn rejects_missing_sets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("none.toml"), "").unwrap();
    let mut args = vec!["--json", "enforce", "--space", "acme", "--force"];
    args.extend(OPERATOR);
    let o = run(d, &args);
    assert_eq!(o.code, 2);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["status"], "refused", "{v}");
    assert_eq!(v["refusals"][0]["code"], "enforce-sets-missing");
}

#[test]
fn snapshots_are_listed_and_help_is_documented() {
    let dir = setup();
    let d = dir.path();
    forward(d, 2);
    let v: serde_json::Value = serde_json::from_str(&ok(run(
        d,
        &["--json", "rollback", "--space", "acme", "--list"],
    )))
    .unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0]["stage"], "staged",
        "newest first, taken before count"
    );
    assert_eq!(rows[0]["kind"], "enforce");
    let help = ok(run(d, &["enforce", "--help"]));
    insta::with_settings!({ filters => vec![(r"=[^\]]*\.tmp[^\]]*\]", "=[TEMP]]")] }, {
        insta::assert_snapshot!("enforce_help", help);
    });
}

/// The same staged → count → enforce → rollback from the CLI against a
/// moto server: `apply` creates the IPSets, the first `enforce` creates the
/// Web ACL (CreateWebACL), later ones read-modify-write it.
#[test]
fn staged_count_enforce_rollback_against_moto() {
    let Some(moto) = eos_aws::moto::MotoServer::start() else {
        return;
    };
    EXTRA_ENV.with(|m| *m.borrow_mut() = Some(moto.env()));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("none.toml"),
        format!(
            "[backend]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let rules = examples().join("rules.toml");
    ok(run(d, &["rules", "import", rules.to_str().unwrap()]));
    ok(run(
        d,
        &[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            "198.51.100.10",
            "--label",
            "alice home",
            "--declared-by",
            "alice@acme.example",
        ],
    ));
    ok(run(d, &["apply", "--yes"]));
    // The sets' `stage` tags, read back with boto3: they follow the space.
    let stage_tags = || {
        moto.boto3(
            "w = boto3.client('wafv2', **kw)\n\
             for s in sorted(w.list_ip_sets(Scope='REGIONAL')['IPSets'], key=lambda s: s['Name']):\n    \
                 tags = w.list_tags_for_resource(ResourceARN=s['ARN'])['TagInfoForResource']['TagList']\n    \
                 print(s['Name'], {t['Key']: t['Value'] for t in tags}.get('stage'))\n",
        )
    };
    let tags =
        |acme: &str| format!("eos-acme-v4 {acme}\neos-acme-v6 {acme}\neos-globex-v4 staged\n");
    assert_eq!(stage_tags(), Some(tags("staged")));
    let outs = forward(d, 2);
    assert_eq!(stage_tags(), Some(tags("count")));
    let outs = outs + &forward(d, 1);
    assert_eq!(stage_tags(), Some(tags("enforce")));
    assert!(outs.contains("created the Web ACL"), "{outs}");
    assert!(outs.contains("on backend aws:REGIONAL:us-east-1"), "{outs}");
    assert!(outs.contains("default-block"), "{outs}");
    let list: serde_json::Value = serde_json::from_str(&ok(run(
        d,
        &["--json", "rollback", "--space", "acme", "--list"],
    )))
    .unwrap();
    let before_enforce = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == "count")
        .unwrap()["run"]
        .clone();
    let v: serde_json::Value =
        serde_json::from_str(&ok(run(d, &["--json", "rollback", "--space", "acme"]))).unwrap();
    assert_eq!(v["snapshot"], before_enforce);
    assert_eq!(v["steps"][0]["kind"], "default-allow");
    assert_eq!(v["steps"][1]["default_action"], "ALLOW");
    assert_eq!(
        v["stage_changes"]["acme"],
        serde_json::json!(["enforce", "count"])
    );
    assert_eq!(stage_tags(), Some(tags("count")));
    let again: serde_json::Value =
        serde_json::from_str(&ok(run(d, &["--json", "rollback", "--space", "acme"]))).unwrap();
    assert_eq!(again["steps"], serde_json::json!([]));
    EXTRA_ENV.with(|m| *m.borrow_mut() = None);
}

/// `[gate]` (with `extra` lines) and one listener serving acme.
fn gate_config(arn: &str, extra: &str) -> String {
    format!(
        "[gate]\nbucket = \"trust\"\ntrust_stores = [\"eos-ca\"]\n{extra}\n[[gate.listeners]]\narn = \"{arn}\"\nspaces = [\"acme\"]\n"
    )
}

#[test]
fn a_bad_gate_listener_or_operator_certificate_is_refused_before_anything_is_written() {
    let dir = setup();
    let d = dir.path();
    let mut args = vec!["enforce", "--space", "acme"];
    args.extend(OPERATOR);
    std::fs::write(
        d.join("none.toml"),
        gate_config(
            "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/eos/1",
            "",
        ),
    )
    .unwrap();
    let o = run(d, &args);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("none.toml:6:7: [[gate.listeners]] arn `arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/eos/1` is not an ELBv2 listener ARN"),
        "{}",
        o.stderr
    );
    // A listener ARN, but an operator certificate that cannot be read:
    // refused before any AWS call (the endpoint does not exist).
    std::fs::write(
        d.join("none.toml"),
        gate_config(
            "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/eos/1/2",
            "operator_cert = \"missing.pem\"\n",
        ) + "\n[backend]\nregion = \"eu-west-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let o = run(d, &args);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("operator certificate"), "{}", o.stderr);
    std::fs::write(d.join("none.toml"), "").unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(run(
        d,
        &["--json", "rollback", "--space", "acme", "--list"],
    )))
    .unwrap();
    assert_eq!(v, serde_json::json!([]), "no snapshot");
}

/// The same staged → count → enforce → rollback from the CLI with the state
/// store on PostgreSQL (`EOS_SEC_STORE_URL`, the local backend's sets and
/// Web ACL in that database too): every command prints what it prints on
/// SQLite, and the snapshots, stages and audit entries are read back from
/// the database — nothing is written to a state.db.
#[test]
fn staged_count_enforce_rollback_on_postgresql() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("eos");
    let steps = |d: &Path| {
        let mut outs = forward(d, 3);
        outs.push_str(&ok(run(d, &["rollback", "--space", "acme"])));
        outs.push_str(&ok(run(d, &["rollback", "--space", "acme", "--list"])));
        outs
    };
    let sqlite = setup();
    let on_sqlite = steps(sqlite.path());
    EXTRA_ENV.with(|m| *m.borrow_mut() = Some(vec![("EOS_SEC_STORE_URL", url.clone())]));
    let pg = setup();
    let on_pg = steps(pg.path());
    let refused = run(
        pg.path(),
        &["enforce", "--space", "acme", "--stage", "staged"],
    );
    EXTRA_ENV.with(|m| *m.borrow_mut() = None);
    // The same, but for the times the snapshots were taken.
    let untimed = |out: &str| {
        out.split(' ')
            .map(
                |w| match w.len() == 20 && w.ends_with('Z') && w.contains('T') {
                    true => "<time>",
                    false => w,
                },
            )
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(untimed(&on_pg), untimed(&on_sqlite));
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("rollback"), "{}", refused.stderr);
    assert!(!pg.path().join("state.db").exists());

    let store =
        eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    let list = eos_store::enforce::list_snapshots(store.conn(), "local", "eos-restricted").unwrap();
    // Three enforce runs (the last with two writes) and the rollback's two
    // writes, each write after its snapshot; every run named by its first.
    let runs: Vec<(i64, i64)> = list.iter().map(|s| (s.id, s.run)).collect();
    assert_eq!(runs, [(6, 5), (5, 5), (4, 3), (3, 3), (2, 2), (1, 1)]);
    let mut store = store;
    use eos_policy::enforce::EnforceJournal as _;
    let stages = store.stages("local", "eos-restricted").unwrap();
    assert_eq!(
        stages[&eos_identity::SpaceId::new("acme").unwrap()].as_str(),
        "count"
    );
    let actions: Vec<String> = store
        .audit_log(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    for a in [
        "webacl.snapshot",
        "webacl.write",
        "enforce.stage",
        "enforce.rollback",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}
