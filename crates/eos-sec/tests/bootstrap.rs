//! `eos-sec bootstrap` and `eos-sec sync` end to end, as a process: on the
//! local backend with the shipped example log and rules, and against AWS
//! WAFv2 on moto's server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{State, example};
use eos_aws::moto::MotoServer;

/// The example config: the load balancers of the example log are trusted.
fn example_config() -> String {
    std::fs::read_to_string(common::examples().join("../eos-sec.toml")).unwrap()
}

fn bootstrap_args() -> Vec<String> {
    [
        "bootstrap",
        "--logs",
        "usage.jsonl",
        "--rules",
        "rules.toml",
    ]
    .map(String::from)
    .to_vec()
}

/// A state directory with the example config, log and rules in it, so the
/// report names them by relative paths.
fn example_state(extra_config: &str) -> State {
    let st = State::new(&format!("{}{extra_config}", example_config()));
    for f in ["usage.jsonl", "rules.toml"] {
        std::fs::copy(common::examples().join(f), st.path().join(f)).unwrap();
    }
    st
}

/// `rules add` of one address with a label, declared by `by`.
fn add_rule(st: &State, space: &str, cidr: &str, label: &str, by: &str) {
    st.ok(&[
        "rules",
        "add",
        "--space",
        space,
        "--cidr",
        cidr,
        "--label",
        label,
        "--declared-by",
        by,
    ]);
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn staged_names(v: &serde_json::Value) -> Vec<String> {
    v["staged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bootstrap_example_stages_every_space_and_explains_it() {
    let st = example_state("");
    let o = st.ok(&strs(&bootstrap_args()));
    insta::assert_snapshot!("bootstrap_example", o.stdout);
    // The review afterwards: nothing left to change.
    let o = st.ok(&["plan"]);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    // A second bootstrap on the same evidence changes nothing.
    let mut args = vec!["--json".to_owned()];
    args.extend(bootstrap_args());
    let o = st.ok(&strs(&args));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(staged_names(&v).is_empty(), "{v}");
}

#[test]
fn bootstrap_json_has_provenance_and_coverage() {
    let st = example_state("");
    let mut args = vec!["--json".to_owned()];
    args.extend(bootstrap_args());
    let o = st.ok(&strs(&args));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        staged_names(&v),
        [
            "eos-acme-v4",
            "eos-acme-v6",
            "eos-globex-v4",
            "eos-globex-v6"
        ]
    );
    assert!(
        v["staged"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "created")
    );
    assert_eq!(v["rules_imported"]["added"], 4);
    assert!(
        v["scan"]["bad"]["by_reason"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
    );
    let acme = v["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["space"] == "acme")
        .unwrap();
    // 203.0.113.10 is inside the declared 203.0.113.0/28; 198.51.100.23 and
    // 192.168.7.4 (flagged private) are admitted by evidence alone.
    assert!(acme["requests_admitted"].as_u64().unwrap() > 0);
    assert_eq!(acme["requests_admitted"], acme["requests_total"]);
    assert_eq!(
        acme["users_admitted"],
        serde_json::json!([
            "alice@acme.example",
            "bob@acme.example",
            "carol@acme.example",
            "dave@acme.example"
        ])
    );
    let globex = v["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["space"] == "globex")
        .unwrap();
    assert_eq!(globex["too_little_traffic"], true, "{globex}");
    // The staged set says why each entry is there.
    let plan = st.json(&["plan"]);
    let text = plan.to_string();
    assert!(text.contains("\"kind\":\"declared\""), "{text}");
    assert!(text.contains("\"kind\":\"observed\""), "{text}");
}

#[test]
fn bootstrap_bad_input_writes_nothing() {
    let st = example_state("");
    // A missing log source.
    let o = st.run(&["bootstrap", "--logs", "/nonexistent/usage.jsonl"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("/nonexistent/usage.jsonl"),
        "{}",
        o.stderr
    );
    // A bad rules file: named with its line, nothing imported.
    std::fs::write(
        st.path().join("bad.csv"),
        "space,cidr,label,declared_by,created\nacme,0.0.0.0/0,all,alice,2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    let o = st.run(&["bootstrap", "--logs", "usage.jsonl", "--rules", "bad.csv"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("bad.csv:2"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    // --strict stops at the example's malformed line, naming it.
    let o = st.run(&["bootstrap", "--strict", "--logs", "usage.jsonl"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("usage.jsonl:"), "{}", o.stderr);
    // Nothing of the above reached the state.
    let rules = st.json(&["rules", "list"]);
    assert_eq!(rules, serde_json::json!([]));
}

#[test]
fn without_trusted_proxies_the_load_balancers_are_flagged() {
    let st = State::new("");
    let o = st.ok(&["bootstrap", "--logs", &example("usage.jsonl")]);
    assert!(o.stdout.contains("special-range"), "{}", o.stdout);
    assert!(o.stdout.contains("10.0.1.5"), "{}", o.stdout);
}

#[test]
fn sync_delivers_rules_added_after_bootstrap() {
    let st = example_state("");
    st.ok(&strs(&bootstrap_args()));
    add_rule(
        &st,
        "acme",
        "198.51.100.77",
        "new desk",
        "alice@acme.example",
    );
    let status = st.json(&["sync", "status"]);
    let acme = status["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "eos-acme-v4")
        .unwrap();
    assert_eq!(acme["pending"], 1, "{status}");
    let o = st.ok(&["sync"]);
    insta::assert_snapshot!("sync_one_pass", o.stdout);
    let plan = st.ok(&["plan"]);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    let status = st.ok(&["sync", "status"]);
    assert!(status.stdout.contains("eos-acme-v4"), "{}", status.stdout);
    let o = st.ok(&["sync"]);
    assert!(o.stdout.contains("Nothing to sync"), "{}", o.stdout);
}

#[test]
fn bootstrap_and_sync_against_moto() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let mut st = example_state(&format!(
        "\n[backend]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    let mut args = vec!["--json".to_owned()];
    args.extend(bootstrap_args());
    let o = st.ok(&strs(&args));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["backend"], "aws:REGIONAL:us-east-1");
    assert_eq!(staged_names(&v).len(), 4);
    let o = st.ok(&["plan"]);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    add_rule(&st, "globex", "192.0.2.200", "x", "hank@globex.example");
    let r = st.json(&["sync", "--write-interval", "0s"]);
    assert_eq!(r["delivered"], 1, "{r}");
    let o = st.ok(&["plan"]);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    // The review path: a saved plan, applied exactly.
    add_rule(&st, "globex", "192.0.2.210", "y", "hank@globex.example");
    let o = st.ok(&["plan", "--out", "plan.json"]);
    assert!(o.stdout.contains("+ 192.0.2.210/32"), "{}", o.stdout);
    let applied = st.json(&["apply", "plan.json"]);
    assert_eq!(applied["applied"][0]["outcome"], "updated", "{applied}");
    let o = st.ok(&["plan"]);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    // Applying the same saved plan again is refused: the set changed since.
    let o = st.run(&["apply", "plan.json"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
}

/// `sync --watch` killed (SIGKILL) while it works through a burst, then
/// restarted: the set converges to exactly the declared rules, nothing is
/// left pending, and nothing eos-sec wrote is mistaken for drift.
#[test]
fn sync_watch_killed_mid_burst_converges_after_restart() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    // The killed watcher's spaces stay its own until its lease expires.
    let mut st = State::new(&format!(
        "[backend]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[sync]\nlease = \"1s\"\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    // Three spaces, so a pass makes several paced writes to interrupt.
    let mut csv = String::from("space,cidr,label,declared_by,created\n");
    for space in ["kill-a", "kill-b", "kill-c"] {
        for i in 1..=100 {
            csv.push_str(&format!(
                "{space},198.51.100.{i},desk {i},alice,2026-11-01T00:00:00Z\n"
            ));
        }
    }
    std::fs::write(st.path().join("burst.csv"), csv).unwrap();
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_eos-sec"))
        .args(["sync", "--watch", "--write-interval", "700ms"])
        .env("EOS_SEC_STATE_DIR", st.path().join("state"))
        .env("EOS_SEC_CONFIG", st.path().join("eos-sec.toml"))
        .envs(st.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    st.ok(&["rules", "import", "burst.csv"]);
    // Kill it after the first paced write, before the last.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    watch.kill().unwrap();
    let killed = std::time::Instant::now();
    watch.wait().unwrap();
    // A pass right after the kill leaves the dead worker's spaces to it
    // (reported); once its lease has expired, a pass delivers everything.
    loop {
        let o = st.ok(&["--json", "sync"]);
        let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        if r["pending"] == 0 {
            break;
        }
        assert!(
            r["leased_elsewhere"]
                .as_array()
                .is_some_and(|l| !l.is_empty()),
            "{r}"
        );
        assert!(killed.elapsed() < std::time::Duration::from_secs(10), "{r}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let status = st.json(&["sync", "status"]);
    assert!(
        status["sets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["pending"] == 0),
        "{status}"
    );
    let plan = st.json(&["plan"]);
    for c in plan["changes"].as_array().unwrap() {
        assert_eq!(c["action"], "no-change", "{c}");
        assert_eq!(c["drift"], serde_json::json!([]), "{c}");
    }
}

/// Local IPSet backend, evidence from CloudWatch Logs (moto): the AWS flags
/// reach the log source and are not refused as meant for the backend; with
/// file sources they still are.
#[test]
fn bootstrap_from_cloudwatch_with_the_local_backend() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    common::put_example_usage_log(&moto, "/eos/usage");
    let mut st = example_state("");
    st.env = moto.env();
    let endpoint = moto.endpoint();
    let cloud = [
        "--json",
        "bootstrap",
        "--logs",
        "cloudwatch:///eos/usage",
        "--rules",
        "rules.toml",
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint.as_str(),
    ];
    let v: serde_json::Value = serde_json::from_str(&st.ok(&cloud).stdout).unwrap();
    assert!(v["backend"].as_str().unwrap().starts_with("local"), "{v}");
    assert_eq!(staged_names(&v).len(), 4, "{v}");
    // The same evidence from the file: nothing left to stage.
    let o = st.ok(&["plan"]);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    let files = [
        "bootstrap",
        "--logs",
        "usage.jsonl",
        "--endpoint-url",
        endpoint.as_str(),
    ];
    let o = st.run(&files);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("apply to the aws backend"),
        "{}",
        o.stderr
    );
}

/// What a state directory holds of bootstrap's input, read back from the
/// store itself: rules, observations, pending outbox rows, plans, and the
/// audit actions recorded.
fn kept(
    st: &State,
) -> (
    usize,
    usize,
    usize,
    usize,
    std::collections::BTreeSet<String>,
) {
    let store = eos_store::Store::open(&st.path().join("state")).unwrap();
    let conn = store.conn();
    let count = |table: &str| -> usize {
        eos_store::Sql::query_one(conn, &format!("SELECT COUNT(*) FROM {table}"), &[], |r| {
            r.get::<i64>(0)
        })
        .unwrap()
        .try_into()
        .unwrap()
    };
    let actions = store
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    (
        count("rules"),
        count("observations"),
        count("outbox"),
        count("plans"),
        actions,
    )
}

/// A failed bootstrap says it stored nothing, prints nothing on stdout, and
/// the store holds none of its input.
fn assert_kept_nothing(st: &State, o: &common::Out) {
    assert!(
        o.stderr.contains("nothing of this bootstrap was stored"),
        "{}",
        o.stderr
    );
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert_eq!(kept(st), (0, 0, 0, 0, Default::default()));
}

/// A rules file planning refuses (10,001 /32s that do not aggregate, one
/// space: more than an IPSet holds): bootstrap exits 2 and keeps nothing of
/// its input — no rule, observation, outbox row, plan or audit entry — so
/// no later sync works on what the operator was told was refused.
#[test]
fn a_refused_bootstrap_keeps_nothing() {
    let st = example_state("");
    std::fs::write(
        st.path().join("big.csv"),
        common::too_many_rules_csv("acme"),
    )
    .unwrap();
    let o = st.run(&["bootstrap", "--logs", "usage.jsonl", "--rules", "big.csv"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("too-many-entries"), "{}", o.stderr);
    assert_kept_nothing(&st, &o);
    assert_eq!(st.json(&["rules", "list"]), serde_json::json!([]));
    let o = st.ok(&["sync"]);
    assert!(o.stdout.contains("Nothing to sync"), "{}", o.stdout);
}

/// The backend cannot be reached: bootstrap exits 1 and keeps nothing of
/// its input either.
#[test]
fn a_bootstrap_that_cannot_reach_the_backend_keeps_nothing() {
    let mut st = example_state(
        "\n[backend]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:1\"\n",
    );
    st.env = vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let o = st.run(&strs(&bootstrap_args()));
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_kept_nothing(&st, &o);
}

/// `bootstrap` on a PostgreSQL store: the example's sets are staged in the
/// database (the local backend lives in the store), its rules and plan
/// recorded there, and a second bootstrap finds nothing to change.
#[test]
fn bootstrap_on_a_postgresql_store() {
    use eos_store::Sql as _;
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("cli_bootstrap");
    let mut st = example_state("");
    st.env.push(("EOS_SEC_STORE_URL", url.clone()));
    let args = bootstrap_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = st.json(&args);
    let store =
        eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    let sets: Vec<String> = store
        .conn()
        .query("SELECT name FROM local_ipsets ORDER BY name", &[], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        sets.contains(&"eos-acme-v4".to_owned()),
        "{sets:?}\n{first}"
    );
    let plans: i64 = store
        .conn()
        .query_one(
            "SELECT count(*) FROM plans WHERE applied_at IS NOT NULL",
            &[],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(plans, 1);
    assert!(!st.json(&["rules", "list"]).as_array().unwrap().is_empty());
    assert!(!st.path().join("state").join("state.db").exists());
}
