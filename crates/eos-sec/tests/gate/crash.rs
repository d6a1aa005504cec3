//! The revoke → CRL → edge path killed with SIGKILL between its steps, on
//! moto: a proxy in front of moto holds the request that starts a step,
//! the test kills `eos-sec sync` while it waits, then looks at S3 (boto3)
//! and the state store. After a restart every queued CRL is delivered
//! exactly once. moto has no ELBv2 trust stores: the trust-store steps
//! (AddTrustStoreRevocations before RemoveTrustStoreRevocations, read
//! back) are covered by eos-aws's replay tests, not here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::common::State;
use super::{revoke_one, s3_crls, synced_gate};

/// A plain HTTP/1.1 proxy to moto that, when armed with a request-line
/// prefix, holds the first request that starts with it (never forwards
/// it) and reports it.
struct HoldingProxy {
    port: u16,
    armed: Arc<Mutex<Option<String>>>,
    held: Receiver<String>,
}

impl HoldingProxy {
    fn start(upstream: u16) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (tx, held) = channel();
        let a = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (a, tx) = (a.clone(), tx.clone());
                std::thread::spawn(move || relay(client, upstream, &a, &tx));
            }
        });
        HoldingProxy { port, armed, held }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn arm(&self, prefix: &str) {
        *self.armed.lock().unwrap() = Some(prefix.to_owned());
    }
}

/// Forward each request of `client` to moto (one upstream connection),
/// answers copied back by a second thread.
fn relay(client: TcpStream, upstream: u16, armed: &Mutex<Option<String>>, held: &Sender<String>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut up: Option<TcpStream> = None;
    let done = Arc::new(AtomicBool::new(false));
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let first = head.lines().next().unwrap_or_default().to_owned();
        let hold = {
            let mut a = armed.lock().unwrap();
            let hit = a.as_deref().is_some_and(|p| first.starts_with(p));
            if hit {
                *a = None;
            }
            hit
        };
        if hold {
            held.send(first).unwrap();
            // Never answered: the process is killed while it waits.
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("transfer-encoding: chunked"), "{head}");
        let len = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let up = up.get_or_insert_with(|| {
            let s = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (mut from, mut to) = (s.try_clone().unwrap(), client.try_clone().unwrap());
            let done = done.clone();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                done.store(true, Ordering::SeqCst);
            });
            s
        });
        if up
            .write_all(head.as_bytes())
            .and_then(|()| up.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

/// `eos-sec sync` through the proxy, SIGKILLed once the proxy holds a
/// request starting with `prefix`.
fn sync_killed_at(st: &State, proxy: &HoldingProxy, prefix: &str) {
    proxy.arm(prefix);
    let mut child = st.command().arg("sync").spawn().unwrap();
    let got = proxy
        .held
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("sync never sent `{prefix}`"));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "{got}: {status}");
}

fn pending(st: &State) -> serde_json::Value {
    st.json(&["sync", "status"])["gate"]["pending_crls"].clone()
}

fn delivered_entries(st: &State) -> Vec<String> {
    let store = eos_store::Store::open(&st.path().join("state")).unwrap();
    eos_store::Sql::query(
        store.conn(),
        "SELECT subject FROM audit_log WHERE action = 'gate.delivered' ORDER BY id",
        &[],
        |r| r.get::<String>(0),
    )
    .unwrap()
}

fn current_crl(st: &State) -> String {
    std::fs::read_to_string(st.path().join("state/ca/crl.pem")).unwrap()
}

#[test]
fn revocation_killed_between_steps_is_delivered_exactly_once() {
    let Some((moto, mut st)) = synced_gate("") else {
        return;
    };
    let upstream: u16 = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = HoldingProxy::start(upstream);
    let config = std::fs::read_to_string(st.path().join("eos-sec.toml")).unwrap();
    std::fs::write(
        st.path().join("eos-sec.toml"),
        config.replace(&moto.endpoint(), &proxy.endpoint()),
    )
    .unwrap();
    for (k, v) in &mut st.env {
        if *k == "AWS_ENDPOINT_URL" {
            *v = proxy.endpoint();
        }
    }

    // Step 1: the revocation commits its CRL and queues it, in one
    // transaction; nothing is published yet.
    revoke_one(&st);
    assert_eq!(pending(&st), serde_json::json!([2]));

    // Killed while uploading the CRL to S3: not there, still queued.
    sync_killed_at(&st, &proxy, "PUT /trust/eos-sec/crl/");
    assert!(s3_crls(&moto).is_empty());
    assert_eq!(pending(&st), serde_json::json!([2]));

    // Killed after S3 took the CRL, while the domain is read: the object
    // is there (read back with boto3), the CRL still queued.
    sync_killed_at(&st, &proxy, "GET /v2/domainnames/api.acme.example");
    assert_eq!(s3_crls(&moto), [current_crl(&st)]);
    assert_eq!(pending(&st), serde_json::json!([2]));
    assert!(delivered_entries(&st).is_empty());

    // Restarted: delivered once, the object not duplicated.
    st.ok(&["sync"]);
    assert_eq!(pending(&st), serde_json::json!([]));
    assert_eq!(delivered_entries(&st), ["crl 2"]);
    assert_eq!(s3_crls(&moto), [current_crl(&st)]);

    // A second revocation, killed after its upload: restarted twice, it
    // is delivered once and the first is not delivered again.
    revoke_one(&st);
    assert_eq!(pending(&st), serde_json::json!([3]));
    sync_killed_at(&st, &proxy, "GET /v2/domainnames/api.acme.example");
    st.ok(&["sync"]);
    st.ok(&["sync"]);
    assert_eq!(pending(&st), serde_json::json!([]));
    assert_eq!(delivered_entries(&st), ["crl 2", "crl 3"]);
    let crls = s3_crls(&moto);
    assert_eq!(crls.len(), 2, "one object per CRL");
    assert!(crls.contains(&current_crl(&st)));
    let status = st.json(&["sync", "status"]);
    let domain = &status["gate"]["targets"][0];
    assert_eq!(domain["name"], "api.acme.example", "{status}");
    assert_eq!(domain["last_error"], serde_json::Value::Null, "{status}");
}
