//! `eos-sec sync` as a process, on the local backend: one space's refusal
//! never delays another (one pass and `--watch`), a failed pass leaves
//! stdout empty, the report's pending count is `sync status`'s, and the
//! watcher's log is plain text when stderr is not a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "sync/takeover.rs"]
mod takeover;

use std::time::{Duration, Instant};

use common::State;

/// 10,001 /32s in `space`: its v4 set is refused (`too-many-entries`).
fn import_too_many(st: &State, space: &str) {
    std::fs::write(st.path().join("big.csv"), common::too_many_rules_csv(space)).unwrap();
    st.ok(&["rules", "import", "big.csv"]);
}

fn add_acme(st: &State) {
    add_acme_address(st, "198.51.100.7");
}

/// `rules add` of one address to space acme.
fn add_acme_address(st: &State, address: &str) {
    st.ok(&[
        "rules",
        "add",
        "--space",
        "acme",
        "--cidr",
        address,
        "--label",
        "desk",
        "--declared-by",
        "alice",
    ]);
}

/// `sync status --json`: pending per IPSet.
fn pending(st: &State) -> Vec<(String, u64)> {
    st.json(&["sync", "status"])["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["pending"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_refused_space_never_delays_another() {
    let st = State::new("");
    import_too_many(&st, "big");
    add_acme(&st);
    let o = st.run(&["sync"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert_eq!(o.stdout, "", "a failed pass prints nothing on stdout");
    assert!(
        o.stderr.contains("eos-acme-v4              created"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains("eos-big-v4               refused   [too-many-entries]"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("eos-big-v6"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("Delivered 1 change(s) with 1 write(s); 10001 pending."),
        "{}",
        o.stderr
    );
    // `sync status` agrees, set by set.
    assert_eq!(
        pending(&st),
        [
            ("eos-acme-v4".to_owned(), 0),
            ("eos-big-v4".to_owned(), 10_001)
        ]
    );
    let plan = st.ok(&["plan", "--space", "acme"]);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    // --json: the report is the document, with the same count.
    let o = st.run(&["--json", "sync"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (r["delivered"].as_u64(), r["pending"].as_u64()),
        (Some(0), Some(10_001))
    );
    assert_eq!(r["sets"][0]["outcome"], "refused", "{r}");
    assert_eq!(r["warnings"][0]["code"], "too-many-entries", "{r}");
    // ... in the refusal document every refusing command prints.
    assert_eq!(r["status"], "refused", "{r}");
    assert_eq!(r["refusals"][0]["code"], "too-many-entries", "{r}");
    assert_eq!(r["refusals"][0]["set"], "eos-big-v4", "{r}");
}

#[test]
fn the_watcher_serves_other_spaces_while_one_is_refused() {
    let st = State::new("");
    import_too_many(&st, "big");
    let log = st.path().join("watch.log");
    let mut watch = st
        .command()
        .args(["sync", "--watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let refused = || {
        st.json(&["sync", "status"])["sets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "eos-big-v4" && !s["last_error"].is_null())
    };
    let start = Instant::now();
    while !refused() {
        assert!(start.elapsed() < Duration::from_secs(60), "big never tried");
        std::thread::sleep(Duration::from_millis(100));
    }
    add_acme(&st);
    let added = Instant::now();
    while pending(&st)
        .iter()
        .any(|(n, p)| n == "eos-acme-v4" && *p > 0)
        || !pending(&st).iter().any(|(n, _)| n == "eos-acme-v4")
    {
        assert!(
            added.elapsed() < Duration::from_secs(4),
            "acme waited behind big's refusal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(watch.wait().unwrap().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("too-many-entries"), "{logged}");
    assert!(
        !logged.contains('\x1b'),
        "colour in a redirected log: {logged:?}"
    );
}

/// `--write-interval` takes the duration grammar of the config file
/// (`request_timeout = "2m"`): one grammar for every duration eos-sec reads.
#[test]
fn write_interval_takes_the_config_duration_grammar() {
    let st = State::new("");
    add_acme(&st);
    for d in ["2m", "1m 30s", "250ms", "0s"] {
        st.ok(&["sync", "--write-interval", d]);
    }
    let o = st.run(&["sync", "--write-interval", "2 fortnights"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("invalid value '2 fortnights' for '--write-interval"),
        "{}",
        o.stderr
    );
}

/// The entries of a local set as the store holds them.
fn local_set(store: &eos_store::Store, name: &str) -> Vec<String> {
    use eos_store::Sql as _;
    let json: Option<String> = store
        .conn()
        .query_opt(
            "SELECT addresses FROM local_ipsets WHERE name = ?1",
            &[&name],
            |r| r.get(0),
        )
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
        .unwrap_or_default()
}

/// `plan`, `apply` and `sync` with `EOS_SEC_STORE_URL` on PostgreSQL: the
/// rules, the outbox, the plan record and the local backend's sets all
/// live in the database (no SQLite file appears in the state directory),
/// read back through the store.
#[test]
fn plan_apply_and_sync_run_on_a_postgresql_store() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("cli_sync");
    let mut st = State::new("");
    st.env.push(("EOS_SEC_STORE_URL", url.clone()));
    add_acme(&st);
    let o = st.ok(&["plan"]);
    assert!(o.stdout.contains("eos-acme-v4"), "{}", o.stdout);
    st.ok(&["apply", "--yes"]);
    let store =
        eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    assert_eq!(local_set(&store, "eos-acme-v4"), ["198.51.100.7/32"]);

    add_acme_address(&st, "198.51.100.9");
    assert_eq!(pending(&st), [("eos-acme-v4".to_owned(), 1)]);
    let report = st.json(&["sync"]);
    assert_eq!(report["delivered"], 1, "{report}");
    assert_eq!(
        local_set(&store, "eos-acme-v4"),
        ["198.51.100.7/32", "198.51.100.9/32"]
    );
    assert_eq!(pending(&st), [("eos-acme-v4".to_owned(), 0)]);
    assert!(
        !st.path().join("state").join("state.db").exists(),
        "nothing is written to a SQLite file beside the PostgreSQL store"
    );
}
