//! What the clients retry, against a real socket: throttling and 5xx
//! answers are retried (and then succeed); a connection that cannot be made
//! is not, and fails as one line naming the endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eos_aws::AwsOptions;
use eos_aws::wafv2::{Scope, WafBackend};
use eos_identity::SpaceId;
use eos_ipset::Family;
use eos_plan::{BackendError, IpSetBackend, IpSetName};

/// An HTTP/1.1 server on 127.0.0.1 that answers its requests with
/// `answers` in turn (the last one repeated), one request per connection.
/// Returns its endpoint and the count of requests it read.
fn server(answers: Vec<(u16, &'static str, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, kind, body) = answers[n.min(answers.len() - 1)];
            let kind = if kind.is_empty() {
                String::new()
            } else {
                format!("x-amzn-errortype: {kind}\r\n")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n{kind}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (endpoint, count)
}

fn options(endpoint: &str) -> AwsOptions {
    AwsOptions {
        region: Some("us-east-1".to_owned()),
        profile: None,
        endpoint_url: Some(endpoint.to_owned()),
        static_credentials: Some(("testing".to_owned(), "testing".to_owned())),
    }
}

fn set() -> IpSetName {
    IpSetName::staged(&SpaceId::new("acme").unwrap(), Family::V4)
}

const NO_SETS: (u16, &str, &str) = (200, "", r#"{"IPSets":[]}"#);

/// Two answers `failure`, then success: the read succeeds on the third
/// request.
async fn retried_twice(failure: (u16, &'static str, &'static str)) {
    let (endpoint, count) = server(vec![failure, failure, NO_SETS]);
    let b = WafBackend::connect(&options(&endpoint), Scope::Regional)
        .await
        .unwrap();
    assert_eq!(b.read(&set()).await.unwrap(), None);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn throttling_is_retried() {
    retried_twice((
        400,
        "ThrottlingException",
        r#"{"__type":"ThrottlingException","message":"slow down"}"#,
    ))
    .await;
}

#[tokio::test]
async fn server_errors_are_retried() {
    retried_twice((503, "ServiceUnavailable", r#"{"message":"try again"}"#)).await;
}

#[tokio::test]
async fn a_refused_connection_is_not_retried() {
    let port = TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let b = WafBackend::connect(&options(&endpoint), Scope::Regional)
        .await
        .unwrap();
    let started = Instant::now();
    let e = b.read(&set()).await.unwrap_err();
    // One attempt, no backoff: the standard strategy's first retry alone
    // waits up to a second.
    assert!(started.elapsed() < Duration::from_millis(500), "{e}");
    assert_eq!(
        e,
        BackendError::Failed {
            name: "eos-acme-v4".to_owned(),
            detail: format!("cannot reach {endpoint} (connection refused)"),
        }
    );
}

#[tokio::test]
async fn an_answer_without_an_error_code_names_its_status() {
    // What a proxy or a server that is not the AWS API answers.
    let (endpoint, _) = server(vec![(404, "", "")]);
    let b = WafBackend::connect(&options(&endpoint), Scope::Regional)
        .await
        .unwrap();
    let e = b.read(&set()).await.unwrap_err().to_string();
    assert_eq!(
        e,
        "eos-acme-v4: unexpected HTTP 404 answer without an AWS error code"
    );
}
