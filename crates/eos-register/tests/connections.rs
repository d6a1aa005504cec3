//! The connection layer over real sockets: which address a connection is
//! from, and how long and how many connections the service holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, Setup};
use eos_codes::Purpose;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Can this host listen on and connect to IPv6 loopback? A dual-stack test
/// needs `[::]`; a host without IPv6 says so loudly instead of passing.
async fn has_ipv6_loopback() -> bool {
    let Ok(l) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIPPED: this host has no IPv6 loopback; the dual-stack test did not run");
        assert!(
            std::env::var_os("EOS_SEC_REQUIRE_ORACLES").is_none(),
            "EOS_SEC_REQUIRE_ORACLES is set and this host has no IPv6 loopback"
        );
        return false;
    };
    drop(l);
    true
}

#[tokio::test]
async fn a_dual_stack_listener_trusts_an_ipv4_proxy() {
    if !has_ipv6_loopback().await {
        return;
    }
    let mut setup = Setup {
        listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        ..Setup::default()
    };
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    // The request comes from 127.0.0.1, which the `[::]` listener sees as
    // ::ffff:127.0.0.1: still the trusted proxy.
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let (status, body) = h
        .post_from("/v1/ip", json!({ "code": code }), Some("203.0.113.60"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "203.0.113.60/32");
    // Without a forwarded header the proxy itself is the client, in its
    // IPv4 form.
    let code = h.issue_for("bob", &[Purpose::RegisterIp]);
    let (status, body) = h.post_from("/v1/ip", json!({ "code": code }), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "127.0.0.1/32");
    h.stop().await;
}

#[tokio::test]
async fn a_forwarded_address_that_cannot_be_a_client_is_refused() {
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    // Unspecified, broadcast, reserved, multicast, discard-only: no host
    // connects from these, so a proxy that forwards one does not know the
    // client, and no rule may be written for it.
    for forwarded in [
        "0.0.0.0",
        "255.255.255.255",
        "0.1.2.3",
        "240.0.0.1",
        "224.0.0.1",
        "::",
        "ff02::1",
        "100::1",
        "::ffff:0.0.0.0",
    ] {
        let (status, body) = h
            .post_from("/v1/ip", json!({ "code": code }), Some(forwarded))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unroutable-client-address")),
            "{forwarded}: {body}"
        );
    }
    let rules = eos_store::rules::list_rules(
        h.store().conn(),
        &[eos_identity::SpaceId::new("acme").unwrap()],
    )
    .unwrap();
    assert!(rules.is_empty(), "{rules:?}");
    // The code was never spent: a routable client registers with it.
    let (status, body) = h
        .post_from("/v1/ip", json!({ "code": code }), Some("198.51.100.7"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "198.51.100.7/32");
    h.stop().await;
}

/// A plain-HTTP service whose connection deadlines are short enough to
/// watch: 1 s for the first request, 1 s idle, 1 s for a TLS handshake.
fn short_deadlines(tls: bool) -> Setup {
    let mut setup = Setup {
        tls,
        ..Setup::default()
    };
    setup.options.header_timeout = Duration::from_secs(1);
    setup.options.connections.idle_timeout = Duration::from_secs(1);
    setup.options.connections.handshake_timeout = Duration::from_secs(1);
    setup
}

/// Read (and discard) until the server closes the connection; how long
/// that took. Fails if it is still open after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(mut stream: S, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, until_closed)
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {limit:?}"));
    start.elapsed()
}

/// The HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113
/// §3.4, §6.5): what a client sends before its first stream.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn connections_that_say_nothing_are_closed() {
    let h = Harness::start_with(short_deadlines(false)).await;
    let limit = Duration::from_secs(4);
    // Silent from the start: the server cannot even tell the protocol.
    let silent = TcpStream::connect(h.addr).await.unwrap();
    // One byte of what may be an HTTP/2 preface or an HTTP/1 `PUT`.
    let mut partial = TcpStream::connect(h.addr).await.unwrap();
    partial.write_all(b"P").await.unwrap();
    // HTTP/2 with its preface and SETTINGS, and then no stream.
    let mut h2 = TcpStream::connect(h.addr).await.unwrap();
    h2.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    let (a, b, c) = tokio::join!(
        closed_within(silent, limit),
        closed_within(partial, limit),
        closed_within(h2, limit)
    );
    for (what, took) in [("silent", a), ("partial", b), ("h2 idle", c)] {
        assert!(took >= Duration::from_millis(900), "{what}: {took:?}");
    }
    // The service still answers.
    let (status, _) = get(&h, "/healthz", None).await.unwrap();
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_request_timeout_is_answered_timeout() {
    let mut setup = short_deadlines(false);
    setup.options.request_timeout = Duration::from_millis(300);
    let h = Harness::start_with(setup).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // The headers promise 100 bytes; the body stops after 7.
    s.write_all(
        b"POST /v1/ip HTTP/1.1\r\nHost: eos\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"code\"",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains('}') {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert_ne!(n, 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"timeout""#), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    h.stop().await;
}

#[tokio::test]
async fn a_tls_session_that_says_nothing_is_closed() {
    let h = Harness::start_with(short_deadlines(true)).await;
    let limit = Duration::from_secs(4);
    // No ClientHello at all: the handshake deadline.
    let silent = TcpStream::connect(h.addr).await.unwrap();
    // A finished handshake, then nothing: the first-request deadline.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(h.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (a, b) = tokio::join!(closed_within(silent, limit), closed_within(tls, limit));
    assert!(a >= Duration::from_millis(900), "no handshake: {a:?}");
    assert!(
        b >= Duration::from_millis(900),
        "idle after handshake: {b:?}"
    );
    h.stop().await;
}

/// Open an HTTP/2 connection (prior knowledge, RFC 9113 §3.3) and GET
/// /healthz on stream 1 with a hand-encoded HPACK block; return once the
/// response headers (`:status 200`) are in. The client then neither reads
/// nor answers anything, as an idle or hostile client would.
async fn h2_get_healthz(h: &Harness) -> TcpStream {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let authority = format!("127.0.0.1:{}", h.addr.port());
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.push(0x04); // :path, literal without indexing
    block.push(8);
    block.extend_from_slice(b"/healthz");
    block.push(0x01); // :authority, literal without indexing
    block.push(u8::try_from(authority.len()).unwrap());
    block.extend_from_slice(authority.as_bytes());
    let len = block.len();
    let mut out = H2_PREFACE_AND_SETTINGS.to_vec();
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    out.extend_from_slice(&[0, (len >> 8) as u8, len as u8, 0x01, 0x05, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    s.write_all(&out).await.unwrap();
    let headers = async {
        loop {
            let mut head = [0u8; 9];
            s.read_exact(&mut head).await.unwrap();
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).await.unwrap();
            if head[3] == 0x01 && head[5..9] == [0, 0, 0, 1] {
                return payload;
            }
        }
    };
    let payload = tokio::time::timeout(Duration::from_secs(5), headers)
        .await
        .unwrap();
    assert_eq!(payload.first(), Some(&0x88), ":status 200 (static index 8)");
    s
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_requests_is_closed() {
    let h = Harness::start_with(short_deadlines(false)).await;
    let s = h2_get_healthz(&h).await;
    let took = closed_within(s, Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    h.stop().await;
}

/// GET `path` from the source address `from` (127.0.0.0/8 is all loopback,
/// so tests can stand for several clients).
async fn get(h: &Harness, path: &str, from: Option<&str>) -> reqwest::Result<(u16, String)> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0);
    if let Some(from) = from {
        b = b.local_address(from.parse::<IpAddr>().unwrap());
    }
    let resp = b
        .build()
        .unwrap()
        .get(format!("{}{path}", h.url))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

async fn connect_from(h: &Harness, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(h.addr).await.unwrap()
}

/// Long deadlines, so only the caps close connections.
fn capped(total: usize, per_source: usize) -> Setup {
    let mut setup = Setup {
        tls: false,
        ..Setup::default()
    };
    setup.options.header_timeout = Duration::from_secs(60);
    setup.options.connections.max_connections = total;
    setup.options.connections.max_connections_per_source = per_source;
    setup
}

#[tokio::test]
async fn one_source_cannot_hold_more_than_its_share_of_connections() {
    let h = Harness::start_with(capped(100, 3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&h, "127.0.0.1").await);
    }
    // The fourth from the same address is closed at once.
    let extra = connect_from(&h, "127.0.0.1").await;
    let took = closed_within(extra, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The ones it holds stay open (their deadline is a minute away) ...
    let mut probe = [0u8; 1];
    let still_open =
        tokio::time::timeout(Duration::from_millis(300), held[0].read(&mut probe)).await;
    assert!(still_open.is_err(), "a held connection was closed");
    // ... and another client is served meanwhile.
    let (status, _) = get(&h, "/healthz", Some("127.0.0.2")).await.unwrap();
    assert_eq!(status, 200);
    // The source's place comes back when one of its connections closes.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = get(&h, "/healthz", Some("127.0.0.1")).await.unwrap();
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn connections_over_the_total_cap_are_closed_at_once() {
    let h = Harness::start_with(capped(4, 100)).await;
    let mut held = Vec::new();
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        held.push(connect_from(&h, from).await);
    }
    let extra = connect_from(&h, "127.0.0.5").await;
    let took = closed_within(extra, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(get(&h, "/healthz", Some("127.0.0.5")).await.is_err());
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = get(&h, "/healthz", Some("127.0.0.5")).await.unwrap();
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_an_idle_http2_client() {
    let mut setup = capped(100, 100);
    setup.options.shutdown_grace = Duration::from_secs(30);
    setup.options.connections.idle_timeout = Duration::from_secs(60);
    let h = Harness::start_with(setup).await;
    // A client that sent its preface and SETTINGS and then reads nothing
    // and answers no PING or GOAWAY.
    let mut h2 = TcpStream::connect(h.addr).await.unwrap();
    h2.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    // And one that made a request and keeps its connection.
    let after_request = h2_get_healthz(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), h.stop())
        .await
        .expect("shutdown waited for idle connections");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop((h2, after_request));
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_dropped() {
    let h = Harness::start_with(short_deadlines(false)).await;
    let (status, page) = get(&h, "/app.js", None).await.unwrap();
    assert_eq!(status, 200);
    // Forty pipelined requests for the page's script (~400 KB each, 16 MB
    // in all: more than the kernel's send buffer takes) on a socket with a
    // small receive window, and no read: the server's writes stall. Every
    // answer is one frame, so nothing is "in flight" once hyper has taken
    // it; the connection is then idle as far as the deadlines go, and is
    // closed and dropped after idle_timeout and the linger.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(h.addr).await.unwrap();
    let requests = "GET /app.js HTTP/1.1\r\nHost: eos\r\n\r\n".repeat(40);
    stalled.write_all(requests.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Whatever the kernel still held arrives, then the end: far less than
    // the forty answers, which a connection left open would deliver.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(buf.get(..n).unwrap()),
            }
        }
    })
    .await
    .expect("the stalled connection is still open");
    assert!(
        received.len() < 40 * page.len(),
        "the stalled connection got all {} bytes",
        received.len()
    );
    // The service still answers.
    let (status, _) = get(&h, "/healthz", None).await.unwrap();
    assert_eq!(status, 200);
    h.stop().await;
}
