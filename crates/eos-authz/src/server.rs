//! The HTTP side: plain HTTP/1.1 and HTTP/2 on a loopback or private
//! listener (the proxy terminates the client's TLS). Bounded: at most
//! `max_connections` at once, the request headers within `header_timeout`
//! (hyper starts that timer again when a kept-alive connection goes idle,
//! so it is also the idle timeout), each answer within `request_timeout`,
//! and shutdown waits `shutdown_grace`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eos_logs::TrustedProxies;
use eos_policy::{CertStatus, UnixTime};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

use crate::decide::decide_from;
use crate::{ChainLookup, Listener, Live, Metrics, Peer};

/// How the service listens and whom it believes.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Peers whose `X-Forwarded-For` and certificate headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Most connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, and for the next request
    /// on an idle kept-alive connection to start.
    pub header_timeout: Duration,
    /// Time to answer a request once its headers are in.
    pub request_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            trusted_proxies: TrustedProxies::default(),
            max_connections: 1024,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
struct AppState {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    trusted: Arc<TrustedProxies>,
}

async fn decision(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let current = s.live.get();
    let a = decide_from(
        &current.evaluator,
        &current.chains,
        &s.trusted,
        peer,
        &headers,
        UnixTime::now(),
    );
    s.metrics.record(&a);
    let d = a.decision.as_ref();
    // Each field is a plain string, number or flag, which log tooling can
    // match (`"cert":"invalid","cert_reason":"revoked"`), not a `Debug`
    // rendering (`Some(Invalid { reason: "revoked" })`); absent values are
    // left out.
    let (cert, cert_reason, cert_uri) = match d.map(|d| &d.cert) {
        None => (None, None, None),
        Some(CertStatus::Absent) => (Some("absent"), None, None),
        Some(CertStatus::Valid { uri }) => (Some("valid"), None, Some(uri.as_str())),
        Some(CertStatus::Invalid { reason }) => (Some("invalid"), Some(reason.as_str()), None),
    };
    tracing::info!(
        target: "eos_authz::decision",
        status = a.status.as_u16(),
        client = a.client.map(tracing::field::display),
        peer = %a.peer,
        trusted_peer = a.trusted_peer,
        ignored_headers = (!a.ignored_headers.is_empty())
            .then(|| tracing::field::debug(&a.ignored_headers)),
        space = a.space.as_ref().map(|s| s.as_str()),
        mode = d.and_then(|d| d.mode).map(|m| m.as_str()),
        stage = d.and_then(|d| d.stage).map(|m| m.as_str()),
        layer = d.map(|d| d.now.layer.as_str()),
        rule = d.map(|d| d.now.rule.as_str()),
        counted = d
            .filter(|d| !d.now.counted.is_empty())
            .map(|d| tracing::field::debug(&d.now.counted)),
        would_refuse = a.would_refuse(),
        gate = a.gate.as_str(),
        user = a.user.as_ref().map(|u| u.as_str()),
        ip_in_set = d.and_then(|d| d.ip_in_set),
        cert,
        cert_reason,
        cert_uri,
        chain = a.chain.map(ChainLookup::as_str),
        "decision"
    );
    let mut resp = a.status.into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if a.status == StatusCode::OK {
        // All three, empty when there is no value: Caddy 2.6's
        // `copy_headers` hands the upstream its unreplaced placeholder
        // (`{http.reverse_proxy.header.X-Eos-User}`) for a header the answer
        // lacks.
        let mut put = |name: &'static str, v: Option<&str>| {
            let v = v
                .and_then(|v| HeaderValue::from_str(v).ok())
                .unwrap_or_else(|| HeaderValue::from_static(""));
            h.insert(name, v);
        };
        put("x-eos-space", a.space.as_ref().map(|s| s.as_str()));
        put("x-eos-user", a.user.as_ref().map(|u| u.as_str()));
        put("x-eos-gate", Some(a.gate.as_str()));
    }
    resp
}

async fn metrics_page(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Serve decisions on `listener` from `live` until `shutdown` resolves:
/// `GET /metrics` answers the counters, every other request is a
/// subrequest to decide. A Unix socket's file is removed at the end.
pub async fn serve(
    listener: Listener,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let state = AppState {
        live,
        metrics,
        trusted: Arc::new(options.trusted_proxies.clone()),
    };
    let request_timeout = options.request_timeout;
    let router = Router::new()
        .route("/metrics", get(metrics_page))
        .fallback(decision)
        .with_state(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let conn = Conn {
        router,
        request_timeout,
        header_timeout: options.header_timeout,
    };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        let (io, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = options.max_connections, "connection limit reached; closing");
            continue;
        };
        let watcher = graceful.watcher();
        match io {
            Stream::Tcp(tcp) => {
                let _ = tcp.set_nodelay(true);
                conn.spawn(tcp, peer, slot, watcher);
            }
            Stream::Unix(unix) => conn.spawn(unix, peer, slot, watcher),
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace time; closing them");
    }
}

/// An accepted connection.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, Peer)> {
    match listener {
        Listener::Tcp(l) => {
            let (tcp, peer) = l.accept().await?;
            Ok((Stream::Tcp(tcp), Peer::Ip(peer.ip().to_canonical())))
        }
        Listener::Unix(l, _) => {
            let (unix, _) = l.accept().await?;
            Ok((Stream::Unix(unix), Peer::Local))
        }
    }
}

/// What each connection is served with.
struct Conn {
    router: Router,
    request_timeout: Duration,
    header_timeout: Duration,
}

impl Conn {
    /// Serve one connection on its own task, HTTP/1.1 or HTTP/2, within
    /// the timeouts, holding its `slot` until it closes.
    fn spawn<S>(
        &self,
        io: S,
        peer: Peer,
        slot: tokio::sync::OwnedSemaphorePermit,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let (request_timeout, header_timeout) = (self.request_timeout, self.header_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<Peer>(peer));
                let router = router.clone();
                async move {
                    match tokio::time::timeout(request_timeout, router.oneshot(req)).await {
                        Ok(r) => r,
                        Err(_) => Ok(StatusCode::SERVICE_UNAVAILABLE.into_response()),
                    }
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(header_timeout))
                .keep_alive_timeout(header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .into_owned();
            let _ = watcher.watch(conn).await;
        });
    }
}
