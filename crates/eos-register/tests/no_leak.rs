//! The service's logs (every level, every target) never contain a code, a
//! CSR or a request body. In its own test binary: the tracing subscriber is
//! process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Harness, csr};
use eos_codes::Purpose;
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_contain_codes_csrs_or_bodies() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let h = Harness::start().await;
    let ip_code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let cert_code = h.issue_for("bob", &[Purpose::RegisterCert]);
    let recovery = h.issue_recovery("root");
    let (pem, _key) = csr();
    assert_eq!(h.post("/v1/ip", json!({ "code": ip_code })).await.0, 200);
    assert_eq!(h.post("/v1/ip", json!({ "code": ip_code })).await.0, 403);
    let wrong = common::guess(&cert_code, 1);
    assert_eq!(
        h.post("/v1/cert", json!({ "code": wrong, "csr": pem }))
            .await
            .0,
        403
    );
    assert_eq!(
        h.post("/v1/cert", json!({ "code": cert_code, "csr": pem }))
            .await
            .0,
        200
    );
    assert_eq!(
        h.post("/v1/recover", json!({ "code": recovery })).await.0,
        200
    );
    let _ = h
        .client
        .get(format!("{}/v1/ip/{ip_code}", h.url))
        .send()
        .await
        .unwrap();
    h.stop().await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request"), "access log written: {logs}");
    assert!(logs.contains("certificate issued"), "{logs}");
    let secret = |c: &str| c.trim_start_matches("EOS-").replace('-', "")[9..].to_owned();
    for code in [&ip_code, &cert_code, &recovery, &wrong] {
        assert!(!logs.contains(code.as_str()), "a code reached the logs");
        assert!(
            !logs.contains(&secret(code)),
            "a code's secret reached the logs"
        );
    }
    let csr_body: String = pem.lines().nth(1).unwrap().to_owned();
    assert!(!logs.contains(&csr_body), "the CSR reached the logs");
    assert!(
        !logs.contains("BEGIN CERTIFICATE"),
        "a certificate reached the logs"
    );
}
