//! `Launch`: the service as another Rust service runs it (what `eos-sec
//! serve` assembles), bound on port 0, a certificate issued through it.

use std::time::{Duration, SystemTime};

use eos_ca::{CaEnv, CsrLimits, IssuancePolicy, LocalCa};
use eos_codes::{BackoffPolicy, IssueRequest, Purpose, Purposes};
use eos_identity::{Role, SpaceId, UserId};
use eos_ops::issuance::CaSetup;
use eos_register::{Launch, ServeOptions, shutdown_pair};
use eos_store::Store;

use crate::common::{csr, ring};

#[tokio::test(flavor = "multi_thread")]
async fn launch_binds_serves_and_issues_with_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let request = IssueRequest::onboarding(
        SpaceId::new("acme").unwrap(),
        UserId::new("alice").unwrap(),
        Role::User,
        Purposes::new([Purpose::RegisterCert]).unwrap(),
    )
    .unwrap();
    let (code, _) = store
        .issue_code(&ring(), &request, eos_codes::unix_now(), "test")
        .unwrap();
    let code = code.reveal().to_string();
    let ca = LocalCa::generate(
        CaEnv::Dev,
        Duration::from_secs(86400 * 30),
        SystemTime::now(),
    )
    .unwrap();
    let ca = CaSetup::local(ca, IssuancePolicy::default(), CsrLimits::default()).unwrap();
    let chain = ca.chain_pem().to_owned();
    let launch = Launch::new(
        "127.0.0.1:0".parse().unwrap(),
        store,
        ring(),
        BackoffPolicy::default(),
        ServeOptions::default(),
    )
    .ca(ca);
    let bound = launch.bind().await.unwrap();
    let url = format!("http://{}", bound.local_addr());
    assert_ne!(bound.local_addr().port(), 0);
    let (trigger, shutdown) = shutdown_pair();
    let served = tokio::spawn(bound.serve(shutdown));
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v1/cert"))
        .json(&serde_json::json!({ "code": code, "csr": csr().0 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "issued", "{answer}");
    assert_eq!(answer["user"], "alice");
    assert_eq!(answer["chain"].as_str().unwrap(), chain);
    trigger.trigger();
    served.await.unwrap().unwrap();
    // An address that cannot be bound is a configuration error naming it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let opts = ServeOptions::default();
    let err = Launch::new(addr, store, ring(), BackoffPolicy::default(), opts)
        .bind()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, eos_register::RegisterError::Config(m) if m.starts_with(&format!("cannot listen on {addr}"))),
        "{err}"
    );
}
