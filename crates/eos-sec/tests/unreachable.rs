//! An AWS endpoint nobody answers on (connection refused, a name that does
//! not resolve): every command that talks to AWS fails within seconds, exit
//! 1, with one line naming the endpoint — not after a minute of retries,
//! not with a Rust `Debug` dump of the connector error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Out, State};

/// A port on 127.0.0.1 that nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// The example config, log and rules, with the AWS backend at `endpoint`.
fn state(endpoint: &str) -> State {
    let config = std::fs::read_to_string(common::examples().join("../eos-sec.toml")).unwrap();
    let mut st = State::new(&format!(
        "{config}\n[backend]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n"
    ));
    for f in ["usage.jsonl", "rules.toml"] {
        std::fs::copy(common::examples().join(f), st.path().join(f)).unwrap();
    }
    st.env = vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    st
}

/// Run, and require a quick exit 1 that names `endpoint` and says `why` on
/// one line, with no `Debug` dump anywhere. Returns what it printed.
fn fails_quickly(st: &State, args: &[&str], endpoint: &str, why: &str) -> Out {
    let started = Instant::now();
    let o = st.run(args);
    let took = started.elapsed();
    let ctx = format!(
        "eos-sec {args:?} took {took:?}\nstdout:\n{}\nstderr:\n{}",
        o.stdout, o.stderr
    );
    assert_eq!(o.code, 1, "{ctx}");
    assert!(took < Duration::from_secs(10), "{ctx}");
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(
        all.lines()
            .any(|l| l.contains(&format!("cannot reach {endpoint} ({why}"))),
        "{ctx}"
    );
    for debug in [
        "{",
        "DispatchFailure",
        "ConnectorError",
        "os error",
        "hyper",
    ] {
        assert!(!all.contains(debug), "`{debug}` in {ctx}");
    }
    o
}

/// [`fails_quickly`], and the error is the only line on stderr.
fn fails_with_one_line(st: &State, args: &[&str], endpoint: &str, why: &str) {
    let o = fails_quickly(st, args, endpoint, why);
    assert_eq!(
        o.stderr.lines().count(),
        1,
        "eos-sec {args:?}: {}",
        o.stderr
    );
    assert!(o.stderr.starts_with("error: "), "{}", o.stderr);
}

#[test]
fn bootstrap_plan_and_sync_fail_fast_on_a_refused_connection() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let st = state(&endpoint);
    let why = "connection refused";
    fails_with_one_line(
        &st,
        &[
            "bootstrap",
            "--logs",
            "usage.jsonl",
            "--rules",
            "rules.toml",
        ],
        &endpoint,
        why,
    );
    st.ok(&["rules", "import", "rules.toml"]);
    fails_with_one_line(&st, &["plan"], &endpoint, why);
    fails_with_one_line(&st, &["apply", "--yes"], &endpoint, why);
    // sync reports per set, then fails (how it prints is sync's business).
    fails_quickly(&st, &["sync"], &endpoint, why);
    // CloudWatch Logs is another client, built in the same place.
    fails_with_one_line(
        &st,
        &[
            "logs",
            "scan",
            "--format",
            "usage",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "cloudwatch:///eos/usage",
        ],
        &endpoint,
        why,
    );
}

#[test]
fn a_name_that_does_not_resolve_fails_fast() {
    // `.invalid` never resolves (RFC 6761, section 6.4).
    let endpoint = "http://waf.eos-sec.invalid:4566";
    let st = state(endpoint);
    st.ok(&["rules", "import", "rules.toml"]);
    fails_with_one_line(&st, &["plan"], endpoint, "name not resolved");
}
