//! `eos-sec serve` with `[serve] sync = true`: a rule added while the
//! service runs reaches the IPSet through the watcher beside it, and
//! `/metrics` shows the sync figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{State, free_port, wait_until_serving};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback; (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn serve_runs_the_sync_watcher_and_serves_its_metrics() {
    let port = free_port();
    let st = State::new(&format!(
        "[serve]\nlisten = \"127.0.0.1:{port}\"\nsync = true\n"
    ));
    let pepper = "3a9f0c5e71b2d8469e0f1a7c3b5d2e8f61a4c9b07e3d5f2a8c1b6e9d0f4a7c35";
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_eos-sec"))
            .arg("serve")
            .env("EOS_SEC_STATE_DIR", st.path().join("state"))
            .env("EOS_SEC_CONFIG", st.path().join("eos-sec.toml"))
            .env("EOS_SEC_PEPPER", pepper)
            .current_dir(st.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_serving(port);
    st.ok(&[
        "rules",
        "add",
        "--space",
        "acme",
        "--cidr",
        "203.0.113.9",
        "--label",
        "desk",
        "--declared-by",
        "alice",
    ]);
    wait_for("the rule in the IPSet", || {
        let o = st.run(&["--json", "sync", "status"]);
        o.code == 0 && {
            let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
            v["sets"].as_array().unwrap().iter().any(|s| {
                s["name"] == "eos-acme-v4" && s["pending"] == 0 && !s["last_success"].is_null()
            })
        }
    });
    let plan = st.ok(&["plan"]);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    let (status, body) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("eos_sync_pending{backend=\"local\",ipset=\"eos-acme-v4\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("eos_sync_writes_total{backend=\"local\",ipset=\"eos-acme-v4\"} 1"),
        "{body}"
    );
    drop(server);
}
