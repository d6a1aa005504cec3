//! ALB connection logs as evidence for the certificate gate: `policy
//! simulate --connections` says per space who the listener would refuse
//! in `verify` mode, and `enforce` refuses to take a `cert` space to
//! `enforce` when a declared administrator is among them.

use super::common::State;
use super::sign_for;

const POLICY: &str = r#"
[web_acl]
name = "eos-restricted"

[routing]
by = "host-label"
domain = "entityos.cloud"

[spaces.acme]
mode = "cert"
admins = ["alice"]

[spaces.globex]
mode = "either"
"#;

const VALID: &str = "NotBefore=2026-11-01T00:00:00Z;NotAfter=2027-11-01T00:00:00Z";

fn line(
    time: &str,
    ip: &str,
    subject: &str,
    validity: &str,
    serial: &str,
    status: &str,
    trace: &str,
) -> String {
    format!(
        "{time} {ip} 50000 443 TLSv1.3 TLS_AES_128_GCM_SHA256 0.004 \"{subject}\" {validity} {serial} {status} {trace}\n"
    )
}

/// A state with a local CA, certificates for acme/alice (the
/// administrator), acme/bob (revoked) and globex/dave, and a connection
/// log replaying each case; the serials by name.
fn evidence() -> (State, Vec<(String, &'static str)>) {
    let st = State::new("");
    std::fs::write(st.path().join("policy.toml"), POLICY).unwrap();
    st.ok(&["ca", "init", "--env", "dev"]);
    let alice = sign_for(&st, "acme", "alice");
    let bob = sign_for(&st, "acme", "bob");
    let dave = sign_for(&st, "globex", "dave");
    st.ok(&["ca", "revoke", &bob, "--reason", "key-compromise"]);
    let up = |s: &str| s.to_ascii_uppercase();
    let t = "2026-11-02T08:01:37.000000Z";
    let log = [
        // Alice on acme (her requests are TID_00000000 in the access log).
        line(
            t,
            "203.0.113.10",
            "CN=alice,O=acme",
            VALID,
            &up(&alice),
            "Success",
            "TID_00000000",
        ),
        // Alice with a certificate that had expired by then.
        line(
            t,
            "203.0.113.10",
            "CN=alice,O=acme",
            "NotBefore=2026-10-01T00:00:00Z;NotAfter=2026-11-01T00:00:00Z",
            &up(&alice),
            "Success",
            "-",
        ),
        // Bob's revoked certificate.
        line(
            t,
            "198.51.100.23",
            "CN=bob,O=acme",
            VALID,
            &up(&bob),
            "Success",
            "-",
        ),
        // Dave's globex certificate calling acme (TID_00000002).
        line(
            t,
            "198.51.100.23",
            "CN=dave,O=globex",
            VALID,
            &up(&dave),
            "Success",
            "TID_00000002",
        ),
        // A certificate of another CA naming acme.
        line(
            t,
            "192.0.2.66",
            "CN=eve,O=acme",
            VALID,
            "0BADC0DE",
            "Success",
            "-",
        ),
        // No certificate, calling acme (TID_00000003); and one calling nothing known.
        line(t, "192.168.7.4", "-", "-", "-", "Success", "TID_00000003"),
        line(t, "192.0.2.99", "-", "-", "-", "Success", "-"),
        // A line cut short.
        "2026-11-02T08:01:37.000000Z 192.0.2.1 1 443 TLSv1.3\n".to_owned(),
    ]
    .concat();
    std::fs::write(st.path().join("conn.log"), log).unwrap();
    let access = common_alb_log();
    std::fs::write(st.path().join("alb.log"), access).unwrap();
    let names = vec![(alice, "<alice>"), (bob, "<bob>"), (dave, "<dave>")];
    (st, names)
}

fn common_alb_log() -> Vec<u8> {
    std::fs::read(super::common::examples().join("alb.log")).unwrap()
}

fn redact(mut s: String, names: &[(String, &str)]) -> String {
    for (serial, name) in names {
        s = s.replace(serial.trim_start_matches('0'), name);
    }
    s
}

const SIMULATE: [&str; 10] = [
    "policy",
    "simulate",
    "--policy",
    "policy.toml",
    "--format",
    "alb",
    "--logs",
    "alb.log",
    "--connections",
    "conn.log",
];

#[test]
fn simulate_says_who_the_listener_would_refuse() {
    let (st, names) = evidence();
    let mut args = SIMULATE.to_vec();
    args.extend(["--set", "acme=none.txt", "--set", "globex=none.txt"]);
    std::fs::write(st.path().join("none.txt"), "").unwrap();
    let out = st.ok(&args);
    insta::assert_snapshot!("simulate_connections", redact(out.stdout, &names));
    let mut json_args = vec!["--json"];
    json_args.extend(&args);
    let j = st.ok(&json_args).stdout;
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    let acme = &v["certificates"]["spaces"]["acme"];
    assert_eq!(acme["verify_at_enforce"], true);
    assert_eq!(acme["refused_admins"], serde_json::json!(["alice"]));
    assert_eq!(
        acme["by_reason"],
        serde_json::json!({"no-certificate": 1, "unknown-ca": 1, "revoked": 1, "expired": 1, "other-space": 1})
    );
    assert_eq!(
        v["certificates"]["unattributed"]["by_reason"]["no-certificate"],
        1
    );
    assert_eq!(v["connections_scan"]["bad"]["by_reason"]["field_count"], 1);
}

/// `eos-sec enforce` of acme to `stage` with the connection log.
fn enforce_acme(stage: &str) -> [&str; 10] {
    [
        "--json",
        "enforce",
        "--policy",
        "policy.toml",
        "--space",
        "acme",
        "--stage",
        stage,
        "--connections",
        "conn.log",
    ]
}

#[test]
fn enforce_refuses_when_an_administrator_would_be_refused() {
    let (st, _) = evidence();
    for stage in ["staged", "count"] {
        st.ok(&enforce_acme(stage));
    }
    let refused = st.run(&enforce_acme("enforce"));
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stdout.contains("enforce-admin-cert-refused"),
        "{}",
        refused.stdout
    );
    assert!(refused.stderr.contains("alice"), "{}", refused.stderr);
    // The connections of the administrator alone decide: without her
    // refused connections the step is taken.
    let log = std::fs::read_to_string(st.path().join("conn.log")).unwrap();
    let without: String = log
        .lines()
        .filter(|l| !l.contains("CN=alice"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(st.path().join("conn.log"), without).unwrap();
    st.ok(&enforce_acme("enforce"));
}
