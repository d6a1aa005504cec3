//! The HTTP API over loopback with TLS on, through a real client (reqwest +
//! rustls) trusting a test CA made with eos-ca: every endpoint's success
//! path and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/agent.rs"]
mod agent;
mod common;
#[path = "api/est.rs"]
mod est;
#[path = "api/launch.rs"]
mod launch;
#[path = "api/renew.rs"]
mod renew;

use std::sync::Arc;
use std::time::Duration;

use common::{Gate, Harness, Setup, Signing, csr};
use eos_codes::{BackoffPolicy, Purpose};
use eos_identity::SpaceId;
use serde_json::json;

const GENERIC: &str = "security code not accepted";

fn rules(h: &Harness) -> Vec<String> {
    eos_store::rules::list_rules(h.store().conn(), &[SpaceId::new("acme").unwrap()])
        .unwrap()
        .into_iter()
        .map(|r| r.rule.cidr.to_string())
        .collect()
}

fn actions(h: &Harness) -> Vec<String> {
    h.store()
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect()
}

fn assert_rejected((status, body): (u16, serde_json::Value)) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "code-rejected", "{body}");
    assert_eq!(body["message"], GENERIC);
}

#[tokio::test]
async fn ip_registers_the_address_the_request_comes_from() {
    let h = Harness::start().await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let (status, body) = h.post("/v1/ip", json!({ "code": code })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "registered");
    assert_eq!(body["cidr"], "127.0.0.1/32");
    assert_eq!(body["rule"], "added");
    assert_eq!(rules(&h), vec!["127.0.0.1/32"]);
    let store = h.store();
    let rule = &eos_store::rules::list_rules(store.conn(), &[]).unwrap()[0].rule;
    assert_eq!(rule.declared_by.as_str(), "alice");
    assert!(rule.label.as_str().contains("with code "), "{}", rule.label);
    // Queued for sync, audited, traced to the code.
    assert_eq!(
        eos_store::rules::pending_outbox(store.conn(), 10)
            .unwrap()
            .len(),
        1
    );
    let acts = actions(&h);
    assert!(acts.contains(&"register.ip".to_owned()), "{acts:?}");
    assert!(acts.contains(&"code.use".to_owned()), "{acts:?}");
    let regs = eos_store::registrations::list(store.conn(), None).unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].source, "127.0.0.1");
    // Single use: the second attempt is refused like any other code problem.
    assert_rejected(h.post("/v1/ip", json!({ "code": code })).await);
    h.stop().await;
}

#[tokio::test]
async fn ip_accepts_a_claimed_address_only_when_it_is_the_source() {
    let h = Harness::start().await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let (status, body) = h
        .post("/v1/ip", json!({ "code": code, "ip": "192.0.2.1" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "address-mismatch");
    let (status, body) = h
        .post("/v1/ip", json!({ "code": code, "ip": "10.0.0.0/8" }))
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad-request")));
    assert!(rules(&h).is_empty());
    // The refusals spent nothing.
    let (status, body) = h
        .post("/v1/ip", json!({ "code": code, "ip": "127.0.0.1" }))
        .await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn ip_behind_a_trusted_proxy_registers_the_forwarded_client() {
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    // The left-most entry is the client's own claim; the proxy appended the
    // address it saw, which is what counts.
    let (status, body) = h
        .post_from(
            "/v1/ip",
            json!({ "code": code }),
            Some("10.9.9.9, 198.51.100.20"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "198.51.100.20/32");
    let code = h.issue_for("bob", &[Purpose::RegisterIp]);
    let (status, body) = h
        .post_from("/v1/ip", json!({ "code": code }), Some("not-an-address"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unknown-client-address"))
    );
    h.stop().await;
}

#[tokio::test]
async fn every_code_problem_is_one_generic_refusal() {
    // Enough free failures that the backoff does not answer first.
    let h = Harness::start_with(Setup {
        backoff: BackoffPolicy {
            free_failures: 100,
            ..BackoffPolicy::default()
        },
        ..Setup::default()
    })
    .await;
    let cert_only = h.issue_for("alice", &[Purpose::RegisterCert]);
    assert_rejected(h.post("/v1/ip", json!({ "code": cert_only })).await);
    assert_rejected(h.post("/v1/ip", json!({ "code": "EOS-not-a-code" })).await);
    // Well-formed but unknown: change the id.
    let other = h.issue_for("carol", &[Purpose::RegisterIp]);
    let unknown = common::with_other_id(&other);
    assert_rejected(h.post("/v1/ip", json!({ "code": unknown })).await);
    // A recovery code is not an onboarding code.
    let rec = h.issue_recovery("root");
    assert_rejected(h.post("/v1/ip", json!({ "code": rec })).await);
    assert_rejected(
        h.post("/v1/cert", json!({ "code": rec, "csr": csr().0 }))
            .await,
    );
    // An onboarding code cannot recover.
    let ip_code = h.issue_for("dave", &[Purpose::RegisterIp]);
    assert_rejected(h.post("/v1/recover", json!({ "code": ip_code })).await);
    assert!(rules(&h).is_empty());
    // The precise reasons are in the audit log, never the code.
    let log = h.store().audit_log(100).unwrap();
    let text = serde_json::to_string(&log).unwrap();
    for c in [&cert_only, &rec, &ip_code, &other] {
        assert!(!text.contains(c.as_str()), "code in the audit log");
    }
    assert!(text.contains("wrong-purpose"), "{text}");
    assert!(text.contains("unknown-code"), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_before_the_code() {
    let h = Harness::start().await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let url = format!("{}/v1/ip", h.url);
    // Not JSON content: refused (a cross-site form cannot send JSON).
    let r = h
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported-media-type");
    // Malformed JSON and unknown fields: generic, no echo of the input.
    let r = h
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(format!("{{\"code\": \"{code}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("bad-request") && !text.contains(&code),
        "{text}"
    );
    let (status, body) = h
        .post("/v1/ip", json!({ "code": code, "space": "other" }))
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad-request")));
    // Over the body limit.
    let big = "A".repeat(20_000);
    let (status, body) = h.post("/v1/ip", json!({ "code": big })).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload-too-large"))
    );
    // None of it spent the code.
    let (status, _) = h.post("/v1/ip", json!({ "code": code })).await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_no_detail() {
    let h = Harness::start().await;
    let get = |path: &str| h.client.get(format!("{}{path}", h.url)).send();
    for (path, status) in [("/v1/nothing", 404), ("/v1/ip", 405)] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert!(r.text().await.unwrap().is_empty(), "{path}");
    }
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["issues_certificates"], true);
    h.stop().await;
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() {
    let h = Harness::start().await;
    let r = h.client.get(&h.url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("strict-transport-security"));
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/app.js">"#));
    // No inline script, nothing from another origin.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("http://") && !html.contains("https://"));
    let js = h
        .client
        .get(format!("{}/app.js", h.url))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    h.stop().await;
}

#[tokio::test]
async fn cert_issues_from_the_code_binding_not_the_csr() {
    let h = Harness::start().await;
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    let (pem, _key) = csr();
    let (status, body) = h
        .post("/v1/cert", json!({ "code": code, "csr": pem }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "issued");
    assert_eq!(body["space"], "acme");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["profile"], "browser");
    assert_eq!(body["chain"].as_str().unwrap(), h.ca_pem);
    let cert = eos_ca::certificate_from_pem(body["certificate"].as_str().unwrap()).unwrap();
    let subject = cert.tbs_certificate().subject().to_string();
    assert!(
        subject.contains("alice") && !subject.contains("ignored"),
        "{subject}"
    );
    let serial = body["serial"].as_str().unwrap();
    let record = eos_store::certs::get(h.store().conn(), serial).unwrap();
    assert_eq!(
        (record.space.as_str(), record.user.as_str()),
        ("acme", "alice")
    );
    assert!(actions(&h).contains(&"register.cert".to_owned()));
    // Spent.
    assert_rejected(
        h.post("/v1/cert", json!({ "code": code, "csr": csr().0 }))
            .await,
    );
    h.stop().await;
}

#[tokio::test]
async fn cert_checks_the_code_before_the_csr() {
    let h = Harness::start().await;
    // A bad code with a bad CSR: the code answers, the CSR is never read.
    assert_rejected(
        h.post("/v1/cert", json!({ "code": "EOS-0000", "csr": "garbage" }))
            .await,
    );
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    let (status, body) = h
        .post("/v1/cert", json!({ "code": code, "csr": "garbage" }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("csr-"),
        "{body}"
    );
    // A refused CSR rolls back: the code is still good.
    let (status, body) = h
        .post("/v1/cert", json!({ "code": code, "csr": csr().0 }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        eos_store::certs::list(h.store().conn(), &Default::default())
            .unwrap()
            .len(),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn cert_refuses_a_key_certified_for_another_account() {
    let h = Harness::start().await;
    let (pem, _key) = csr();
    let a = h.issue_for("alice", &[Purpose::RegisterCert]);
    assert_eq!(
        h.post("/v1/cert", json!({ "code": a, "csr": pem })).await.0,
        200
    );
    let b = h.issue_for("bob", &[Purpose::RegisterCert]);
    let (status, body) = h.post("/v1/cert", json!({ "code": b, "csr": pem })).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("csr-key-reuse"))
    );
    // Without naming the other account.
    assert!(
        !body["message"].as_str().unwrap().contains("alice"),
        "{body}"
    );
    h.stop().await;
}

fn gated(gate: &Arc<Gate>) -> Setup {
    Setup {
        signing: Signing::Gated(gate.clone()),
        ..Setup::default()
    }
}

// Several worker threads, as the service runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_go_on_while_the_ca_signs() {
    // A remote CA (AWS Private CA) answers in seconds: the store must not
    // be held meanwhile, or every registration queues behind it.
    let gate = Gate::new();
    let h = Harness::start_with(gated(&gate)).await;
    let cert_code = h.issue_for("alice", &[Purpose::RegisterCert]);
    let ip_code = h.issue_for("bob", &[Purpose::RegisterIp]);
    let (pem, _key) = csr();
    let cert = h.post("/v1/cert", json!({ "code": cert_code, "csr": pem }));
    // Both waits together stay under the client's 30 s timeout, so if the
    // store were held, this fails instead of hanging on the gate.
    let meanwhile = async {
        gate.wait_started().await;
        let ip = tokio::time::timeout(
            Duration::from_secs(10),
            h.post("/v1/ip", json!({ "code": ip_code })),
        )
        .await;
        // The code's one use is spent while its certificate is signed.
        let again = tokio::time::timeout(
            Duration::from_secs(10),
            h.post("/v1/cert", json!({ "code": cert_code, "csr": csr().0 })),
        )
        .await;
        gate.open(1);
        (ip, again)
    };
    let ((status, body), (ip, again)) = tokio::join!(cert, meanwhile);
    let (ip_status, ip_body) = ip.expect("an address registration waited for the CA");
    assert_eq!(ip_status, 200, "{ip_body}");
    assert_rejected(again.expect("a second use of the code waited for the CA"));
    assert_eq!(status, 200, "{body}");
    let serial = body["serial"].as_str().unwrap();
    let record = eos_store::certs::get(h.store().conn(), serial).unwrap();
    assert_eq!(record.user.as_str(), "alice");
    let acts = actions(&h);
    assert!(acts.contains(&"register.cert".to_owned()), "{acts:?}");
    assert!(!acts.contains(&"code.use-returned".to_owned()), "{acts:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_failed_signature_gives_the_code_use_back() {
    let h = Harness::start_with(Setup {
        signing: Signing::Failing,
        ..Setup::default()
    })
    .await;
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    for _ in 0..2 {
        let (status, body) = h
            .post("/v1/cert", json!({ "code": code, "csr": csr().0 }))
            .await;
        // Not the client's fault, and the second time not `code-rejected`:
        // the use came back.
        assert_eq!((status, body["error"].as_str()), (500, Some("internal")));
    }
    let acts = actions(&h);
    assert_eq!(
        acts.iter().filter(|a| *a == "code.use-returned").count(),
        2,
        "{acts:?}"
    );
    assert!(!acts.contains(&"register.cert".to_owned()), "{acts:?}");
    assert!(
        eos_store::certs::list(h.store().conn(), &Default::default())
            .unwrap()
            .is_empty()
    );
    h.stop().await;
}

// Several worker threads, as the service runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_certified_while_another_request_was_signed_is_refused() {
    key_race(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_the_ca_will_not_revoke_is_named_for_revocation_by_hand() {
    key_race(true).await;
}

/// Two accounts send the same key at once. Both pass the first check
/// (nothing is recorded yet) and both are signed; the owner check when
/// recording lets exactly one through, withdraws the other's certificate
/// from the CA (which fails when `refuse_revocation`) and gives its use
/// back.
async fn key_race(refuse_revocation: bool) {
    let gate = Gate::new();
    gate.refuse_revocation
        .store(refuse_revocation, std::sync::atomic::Ordering::SeqCst);
    let h = Harness::start_with(gated(&gate)).await;
    let (pem, _key) = csr();
    let a = h.issue_for("alice", &[Purpose::RegisterCert]);
    let b = h.issue_for("bob", &[Purpose::RegisterCert]);
    let alice = h.post("/v1/cert", json!({ "code": a, "csr": pem }));
    let bob = async {
        gate.wait_started().await;
        let bob = h.post("/v1/cert", json!({ "code": b, "csr": pem }));
        let open = async {
            gate.wait_started().await;
            gate.open(2);
        };
        tokio::join!(bob, open).0
    };
    let (alice, bob) = tokio::join!(alice, bob);
    let mut outcomes = [
        (alice.0, alice.1["error"].as_str().map(str::to_owned)),
        (bob.0, bob.1["error"].as_str().map(str::to_owned)),
    ];
    outcomes.sort();
    assert_eq!(
        outcomes,
        [(200, None), (422, Some("csr-key-reuse".to_owned()))],
        "{alice:?} {bob:?}"
    );
    let certs = eos_store::certs::list(h.store().conn(), &Default::default()).unwrap();
    assert_eq!(certs.len(), 1);
    // The loser's certificate was signed but not recorded: it is revoked
    // at the CA (which, like a Private CA, keeps what it signed), and its
    // serial is in the audit entry.
    let returned: Vec<_> = h
        .store()
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "code.use-returned")
        .collect();
    assert_eq!(returned.len(), 1, "{returned:?}");
    let reason = returned[0].detail["reason"].as_str().unwrap();
    let serial = reason
        .strip_prefix("certificate ")
        .and_then(|r| {
            r.strip_suffix(if refuse_revocation {
                " signed, not recorded: csr-key-reuse; NOT revoked at the CA (signer: RevokeCertificate throttled (test)): revoke it there by hand"
            } else {
                " signed, not recorded: csr-key-reuse; revoked at the CA (cessation-of-operation)"
            })
        })
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(
        !serial.is_empty()
            && serial.bytes().all(|b| b.is_ascii_hexdigit())
            && serial != certs[0].serial,
        "{reason}"
    );
    let revoked: &[&str] = if refuse_revocation { &[] } else { &[serial] };
    assert_eq!(gate.revoked(), revoked);
    h.stop().await;
}

#[tokio::test]
async fn cert_without_a_ca_is_unavailable() {
    let h = Harness::start_with(Setup {
        with_ca: false,
        ..Setup::default()
    })
    .await;
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    let (status, body) = h
        .post("/v1/cert", json!({ "code": code, "csr": csr().0 }))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("ca-unavailable"))
    );
    h.stop().await;
}

#[tokio::test]
async fn recovery_replaces_the_previous_recovery_address_and_notifies() {
    // A webhook on loopback that records what it is sent.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                tx.send(v).unwrap();
                "ok"
            }
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(hook_listener, hook).await.unwrap() });

    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    setup.options.notify = eos_register::NotifyHook::Webhook(format!("http://{hook_addr}/hook"));
    let h = Harness::start_with(setup).await;
    let code = h.issue_recovery("root");
    // An address some admin declared by hand is never removed by recovery.
    let declared = h.issue_for("alice", &[Purpose::RegisterIp]);
    assert_eq!(
        h.post_from("/v1/ip", json!({ "code": declared }), Some("192.0.2.50"))
            .await
            .0,
        200
    );

    let (status, body) = h
        .post_from("/v1/recover", json!({ "code": code }), Some("198.51.100.7"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "recovered");
    assert_eq!(body["cidr"], "198.51.100.7/32");
    assert!(body["replaced"].is_null());
    let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event["event"], "admin-recovery");
    assert_eq!(event["cidr"], "198.51.100.7/32");
    assert!(!event.to_string().contains(&code));

    // The same (reusable) code from a new address: replaced, not added.
    let (status, body) = h
        .post_from("/v1/recover", json!({ "code": code }), Some("203.0.113.9"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replaced"], "198.51.100.7/32");
    let mut r = rules(&h);
    r.sort();
    assert_eq!(r, vec!["192.0.2.50/32", "203.0.113.9/32"]);
    let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event["replaced"], "198.51.100.7/32");

    // Recovering onto the hand-declared address, then away from it, leaves
    // the declared rule alone.
    assert_eq!(
        h.post_from("/v1/recover", json!({ "code": code }), Some("192.0.2.50"))
            .await
            .0,
        200
    );
    assert_eq!(
        h.post_from("/v1/recover", json!({ "code": code }), Some("203.0.113.10"))
            .await
            .0,
        200
    );
    let mut r = rules(&h);
    r.sort();
    assert_eq!(r, vec!["192.0.2.50/32", "203.0.113.10/32"]);
    let acts = actions(&h);
    assert!(
        acts.iter().filter(|a| *a == "register.recover").count() == 4,
        "{acts:?}"
    );
    assert!(acts.contains(&"rule.removed".to_owned()));
    // The delivery is audited once the hook answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        actions(&h).contains(&"register.recover.notify.delivered".to_owned()),
        "{:?}",
        actions(&h)
    );
    h.stop().await;
}

#[tokio::test]
async fn brute_forced_codes_are_throttled_and_none_succeeds() {
    let h = Harness::start_with(Setup::slow_backoff()).await;
    let real = h.issue_for("alice", &[Purpose::RegisterIp]);
    let mut rejected = 0;
    let mut throttled = 0;
    for i in 0..40u32 {
        // Same id, guessed secrets: each a well-formed code.
        let guess = common::guess(&real, i);
        let (status, body) = h.post("/v1/ip", json!({ "code": guess })).await;
        match (status, body["error"].as_str()) {
            (403, Some("code-rejected")) => rejected += 1,
            (429, Some("throttled")) => {
                throttled += 1;
                assert!(body["retry_after"].as_u64().unwrap() >= 1, "{body}");
            }
            other => panic!("attempt {i}: {other:?} {body}"),
        }
    }
    assert_eq!(rejected, 4, "3 free failures, then the 4th starts the wait");
    assert_eq!(throttled, 36);
    assert!(rules(&h).is_empty());
    // Even the real code waits while the source is backing off.
    let (status, _) = h.post("/v1/ip", json!({ "code": real })).await;
    assert_eq!(status, 429);
    assert!(rules(&h).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn guesses_at_a_code_from_many_addresses_never_lock_its_owner_out() {
    // Code ids are public (rule labels carry them). Wrong secrets for the
    // victim's id from many addresses back those addresses off, never the
    // code: its owner's correct code is accepted from anywhere else.
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    let real = h.issue_for("alice", &[Purpose::RegisterIp]);
    for i in 0..12u32 {
        let from = format!("203.0.113.{}", i + 1);
        let (status, body) = h
            .post_from(
                "/v1/ip",
                json!({ "code": common::guess(&real, i) }),
                Some(&from),
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("code-rejected")),
            "{i}"
        );
    }
    let (status, body) = h
        .post_from("/v1/ip", json!({ "code": real }), Some("198.51.100.77"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "198.51.100.77/32");
    let reasons: Vec<String> = h
        .store()
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "code.reject")
        .map(|e| e.detail["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(reasons, vec!["wrong-secret"; 12]);
    h.stop().await;
}

#[tokio::test]
async fn requests_over_the_rate_limit_are_refused() {
    let mut setup = Setup::default();
    setup.options.limits.per_source_per_minute = 1.try_into().unwrap();
    setup.options.limits.per_source_burst = 3.try_into().unwrap();
    let h = Harness::start_with(setup).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, body) = h.post("/v1/ip", json!({ "code": "EOS-0" })).await;
        statuses.push((status, body["error"].as_str().unwrap_or("").to_owned()));
    }
    assert_eq!(
        statuses[3],
        (429, "rate-limited".to_owned()),
        "{statuses:?}"
    );
    assert_eq!(statuses[4].0, 429);
    // Health checks are not limited.
    let r = h
        .client
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    h.stop().await;
}

#[tokio::test]
async fn waiting_as_long_as_retry_after_says_is_enough() {
    // At 30 a minute a request is let through every 2 s: a wait of 1.9 s
    // must be announced as 2, not 1, or a client that obeys it is refused
    // again.
    let mut setup = Setup::default();
    setup.options.limits.per_source_per_minute = 30.try_into().unwrap();
    setup.options.limits.per_source_burst = 1.try_into().unwrap();
    let h = Harness::start_with(setup).await;
    let get = || h.client.get(format!("{}/v1/nothing", h.url)).send();
    for round in 0..3 {
        let mut resp = get().await.unwrap();
        while resp.status().as_u16() != 429 {
            resp = get().await.unwrap();
        }
        let header: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["retry_after"], header, "{body}");
        assert!((1..=2).contains(&header), "round {round}: {header}");
        tokio::time::sleep(Duration::from_secs(header)).await;
        let after = get().await.unwrap();
        assert_eq!(
            after.status().as_u16(),
            404,
            "round {round}: waited {header}s"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn page_loads_have_their_own_cached_budget() {
    // The documented defaults: 10 requests at once per source for the API.
    let mut setup = Setup::default();
    setup.options.limits = eos_register::ServeOptions::default().limits;
    let h = Harness::start_with(setup).await;
    let get = |path: &str| h.client.get(format!("{}{path}", h.url)).send();
    for load in 0..15 {
        for path in ["/", "/app.js", "/style.css"] {
            let r = get(path).await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "page load {load}: {path}");
            let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
            assert!(cache.contains("max-age="), "{path}: {cache}");
            if load > 0 {
                continue;
            }
            let etag = r.headers()["etag"].clone();
            // A revalidation costs nothing to send again.
            let again = h
                .client
                .get(format!("{}{path}", h.url))
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status().as_u16(), 304, "{path}");
        }
    }
    // The API's budget is untouched: its whole burst is still there.
    for i in 0..10 {
        let r = get("/v1/nothing").await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "API request {i}");
    }
    let r = get("/v1/nothing").await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    h.stop().await;
}

#[tokio::test]
async fn a_json_array_is_not_an_object() {
    let h = Harness::start().await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let (status, body) = h.post("/v1/ip", json!([code])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad-request")),
        "{body}"
    );
    let cert = h.issue_for("bob", &[Purpose::RegisterCert]);
    let (status, body) = h.post("/v1/cert", json!([cert, csr().0])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad-request")),
        "{body}"
    );
    let (status, body) = h.post("/v1/recover", json!([code])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad-request")),
        "{body}"
    );
    // Refused before the code: nothing spent, nothing counted.
    let acts = actions(&h);
    assert!(
        acts.iter()
            .all(|a| !a.starts_with("code.") || a == "code.issue"),
        "{acts:?}"
    );
    let (status, body) = h.post("/v1/ip", json!({ "code": code })).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn two_concurrent_uses_of_a_single_use_code_make_one_success() {
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = std::sync::Arc::new(Harness::start_with(setup).await);
    for round in 0..5 {
        let code = h.issue_for(&format!("user{round}"), &[Purpose::RegisterIp]);
        let mut tasks = Vec::new();
        for i in 0..2 {
            let h = h.clone();
            let code = code.clone();
            tasks.push(tokio::spawn(async move {
                let xff = format!("198.51.100.{}", 10 * round + i + 1);
                h.post_from("/v1/ip", json!({ "code": code }), Some(&xff))
                    .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => ok += 1,
                403 => assert_eq!(body["error"], "code-rejected"),
                s => panic!("{s} {body}"),
            }
        }
        assert_eq!(ok, 1, "round {round}");
    }
    assert_eq!(rules(&h).len(), 5);
}

/// Requests that arrive together share one SQLite commit (group commit),
/// each in a savepoint of its own: every one still gets its own outcome —
/// each code registers once, a second use of one and a wrong secret are
/// refused (and audited) without undoing the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_share_a_commit_keep_their_own_outcomes() {
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Arc::new(Harness::start_with(setup).await);
    let codes: Vec<String> = (0..20)
        .map(|i| h.issue_for(&format!("user{i}"), &[Purpose::RegisterIp]))
        .collect();
    let mut tasks = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        // Each code twice, and a wrong secret for it, all at once.
        for (n, presented) in [code.clone(), code.clone(), common::guess(code, 1)]
            .into_iter()
            .enumerate()
        {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let xff = format!("198.51.{n}.{i}");
                let (status, body) = h
                    .post_from("/v1/ip", json!({ "code": presented }), Some(&xff))
                    .await;
                (n, status, body)
            }));
        }
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (0 | 1, 200, _) => ok += 1,
            (_, 403, body) => {
                assert_eq!(body["error"], "code-rejected");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((ok, refused), (20, 40));
    assert_eq!(rules(&h).len(), 20);
    let actions = actions(&h);
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(count("register.ip"), 20);
    assert_eq!(count("code.reject"), 40);
}

#[tokio::test]
async fn shutdown_is_graceful() {
    let h = Harness::start().await;
    let addr = h.addr;
    h.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_slow_registration_is_answered_not_timed_out() {
    // The request time limit is for reading the request. A registration
    // that waits on the store longer than that still commits and is
    // answered: a 408 after the commit would send the user back with a
    // code that is already spent.
    let mut setup = Setup::default();
    setup.options.request_timeout = Duration::from_millis(300);
    let h = Harness::start_with(setup).await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let dir = h.state_dir();
    let holder = std::thread::spawn(move || {
        let mut store = eos_store::Store::open(&dir).unwrap();
        let tx = store.transaction().unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        tx.commit().unwrap();
    });
    locked_rx.recv().unwrap();
    let started = std::time::Instant::now();
    let (status, body) = h.post("/v1/ip", json!({ "code": code })).await;
    holder.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "registered");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(rules(&h), vec!["127.0.0.1/32"]);
    h.stop().await;
}
