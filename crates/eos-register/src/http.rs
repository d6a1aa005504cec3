//! The HTTP face of the service: routes, the guard every request passes
//! (client address, rate limits, timeout, security headers, access log),
//! and the JSON endpoints.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;

use crate::notify::{RecoveryEvent, notify};
use crate::registrar::{Outcome, PresentedCode, Registrar, Registration};
use crate::{ApiError, ClientCertificate, est, page};

/// Shared by every request.
#[derive(Debug)]
pub(crate) struct AppState {
    registrar: Arc<Registrar>,
    per_source: DefaultKeyedRateLimiter<IpAddr>,
    page_per_source: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    tls: bool,
}

impl AppState {
    /// The registrar requests are run by.
    pub(crate) fn registrar(&self) -> &Arc<Registrar> {
        &self.registrar
    }

    /// Forget rate-limit state of sources that are idle again (called
    /// periodically, so an open endpoint cannot grow the map without bound).
    pub(crate) fn prune(&self) {
        for limiter in [&self.per_source, &self.page_per_source] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The client address the request resolved to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub(crate) IpAddr);

/// The rate-limit key: IPv4 address, or the IPv6 /64 (one host usually
/// holds a whole /64, so per-address limits would not limit it).
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// Whether a request draws on the API's per-source budget: the requests
/// that reach the state store (`/v1/*`, `/metrics`). Everything else — the
/// page, its files, unknown paths such as a browser's `/favicon.ico` — is
/// static and draws on the page's own budget, so reloading the page never
/// leaves its script refused or the API's budget spent.
fn reaches_the_store(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/metrics" || est::is_est(path)
}

/// Known paths, for the access log: anything else is logged as `other`, so
/// nothing a client puts in a URL reaches the logs.
fn route_name(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/app.js" => "/app.js",
        "/style.css" => "/style.css",
        "/licenses.txt" => "/licenses.txt",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/v1/ip" => "/v1/ip",
        "/v1/cert" => "/v1/cert",
        "/v1/recover" => "/v1/recover",
        est::CACERTS => est::CACERTS,
        est::SIMPLEENROLL => est::SIMPLEENROLL,
        est::SIMPLEREENROLL => est::SIMPLEREENROLL,
        "/v1/renew" => "/v1/renew",
        _ => "other",
    }
}

pub(crate) fn state(registrar: Arc<Registrar>, tls: bool) -> Arc<AppState> {
    let limits = registrar.options().limits;
    let per_source =
        Quota::per_minute(limits.per_source_per_minute).allow_burst(limits.per_source_burst);
    let page_per_source = Quota::per_minute(limits.page_per_source_per_minute)
        .allow_burst(limits.page_per_source_burst);
    let global = Quota::per_second(limits.global_per_second).allow_burst(limits.global_burst);
    Arc::new(AppState {
        registrar,
        per_source: RateLimiter::keyed(per_source),
        page_per_source: RateLimiter::keyed(page_per_source),
        global: RateLimiter::direct(global),
        tls,
    })
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/licenses.txt", get(page::licenses))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/ip", post(ip))
        .route("/v1/cert", post(cert))
        .route("/v1/recover", post(recover))
        .merge(est::routes())
        .route("/v1/renew", post(renew).get(renewal_status))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The page's policy: scripts, styles and requests from this origin only;
/// no framing, no plugins, no forms posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn security_headers(resp: &mut Response, tls: bool) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else {
            // Not text: a value no address can be read from.
            return Some("?".to_owned());
        };
        match &mut out {
            Some(o) => {
                o.push(',');
                o.push_str(s);
            }
            None => out = Some(s.to_owned()),
        }
    }
    out
}

async fn guard(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = route_name(req.uri().path());
    let options = st.registrar.options();
    let xff = forwarded_for(req.headers());
    // Canonical (IPv4-mapped IPv6 as IPv4) before any use: proxy check, rate
    // limit and backoff keys, the rule, the audit and access log.
    let peer = peer.ip().to_canonical();
    let client = options.trusted_proxies.client_address(peer, xff.as_deref());
    let mut resp = match client {
        None => error_response(ApiError::unknown_client()),
        Some(client) if !eos_ipset::is_unicast_source(client) => {
            error_response(ApiError::unroutable_client())
        }
        Some(client) => {
            let health = matches!(route, "/healthz" | "/readyz");
            let limited = if health {
                None
            } else {
                let clock = DefaultClock::default();
                let per_source = if reaches_the_store(req.uri().path()) {
                    &st.per_source
                } else {
                    &st.page_per_source
                };
                st.global
                    .check()
                    .and_then(|()| per_source.check_key(&limit_key(client)))
                    .err()
                    .map(|nu| nu.wait_time_from(clock.now()))
            };
            match limited {
                Some(wait) => ApiError::rate_limited(wait).into_response(),
                None => {
                    req.extensions_mut().insert(Client(client));
                    next.run(req).await
                }
            }
        }
    };
    security_headers(&mut resp, st.tls);
    let error = resp
        .extensions()
        .get::<ErrorCode>()
        .map(|e| e.0)
        .unwrap_or("");
    tracing::info!(
        target: "eos_register::access",
        method = %method,
        route,
        status = resp.status().as_u16(),
        client = %client.map(|c| c.to_string()).unwrap_or_else(|| "?".to_owned()),
        peer = %peer,
        error,
        elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    resp
}

/// The stable error code of a response, for the access log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

fn error_response(e: ApiError) -> Response {
    let code = e.code();
    let mut resp = e.into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let registrar = st.registrar.clone();
    let ready = tokio::task::spawn_blocking(move || registrar.ready())
        .await
        .unwrap_or(false);
    let body = json!({
        "status": if ready { "ready" } else { "not-ready" },
        "issues_certificates": st.registrar.issues_certificates(),
    });
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The renewal figures, and the sync watcher's when it runs here
/// (Prometheus text).
async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let registrar = st.registrar.clone();
    let text = match tokio::task::spawn_blocking(move || {
        let renewal = registrar.renewal_metrics();
        match registrar.sync_metrics() {
            None => Ok(renewal),
            Some(sync) => sync.map(|sync| format!("{sync}{renewal}")),
        }
    })
    .await
    {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return metrics_failed(&e),
        Err(e) => return metrics_failed(&e),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn metrics_failed(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sync metrics");
    error_response(ApiError::internal())
}

/// Read the body as JSON of type `T`: `application/json` only (a
/// cross-site form cannot send it without a CORS preflight, which this
/// service never answers), at most `max_body_bytes`, and parse errors that
/// never echo the input.
async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    shape: &str,
) -> Result<T, ApiError> {
    if !has_media_type(headers, "application/json") {
        return Err(ApiError::unsupported_media_type());
    }
    let bytes = read_limited(headers, body, limit).await?;
    let refused = || ApiError::bad_request(&format!("the body must be a JSON object {shape}"));
    // serde reads a struct from a JSON array too (`["EOS-…"]` as
    // `{"code": "EOS-…"}`): the API takes objects only. JSON whitespace is
    // space, tab, CR and LF (RFC 8259 §2); anything else before the value
    // is refused by the parser anyway.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if first != Some(&b'{') {
        return Err(refused());
    }
    serde_json::from_slice(&bytes).map_err(|_| refused())
}

/// Whether the request's `Content-Type` is `expected` (parameters aside).
pub(crate) fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// Read a body of at most `limit` bytes: refused at once when its
/// `Content-Length` says it is over, else as soon as it grows over.
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpBody {
    code: PresentedCode,
    #[serde(default)]
    ip: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertBody {
    code: PresentedCode,
    csr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    csr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: PresentedCode,
}

async fn ip(
    State(st): State<Arc<AppState>>,
    axum::Extension(Client(client)): axum::Extension<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    endpoint(
        st,
        client,
        &headers,
        body,
        r#"{"code": "...", "ip": "optional"}"#,
        |b: IpBody| {
            let claimed =
                b.ip.as_deref()
                    .map(|s| {
                        s.trim().parse::<IpAddr>().map_err(|_| {
                            ApiError::bad_request("ip must be a single IPv4 or IPv6 address")
                        })
                    })
                    .transpose()?;
            Ok(Registration::Ip {
                code: b.code,
                claimed,
            })
        },
    )
    .await
}

async fn cert(
    State(st): State<Arc<AppState>>,
    axum::Extension(Client(client)): axum::Extension<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    endpoint(
        st,
        client,
        &headers,
        body,
        r#"{"code": "...", "csr": "PEM"}"#,
        |b: CertBody| {
            Ok(Registration::Cert {
                code: b.code,
                csr: b.csr,
            })
        },
    )
    .await
}

async fn recover(
    State(st): State<Arc<AppState>>,
    axum::Extension(Client(client)): axum::Extension<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    endpoint(
        st,
        client,
        &headers,
        body,
        r#"{"code": "..."}"#,
        |b: CodeBody| Ok(Registration::Recover { code: b.code }),
    )
    .await
}

/// The header an AWS load balancer in mTLS passthrough mode writes the
/// client's chain into (URL-encoded PEM, leaf first).
pub(crate) const PASSTHROUGH_CERT_HEADER: &str = "x-amzn-mtls-clientcert";

/// The certificate the client presented: the one the TLS handshake
/// verified, else — only when the peer is a trusted proxy — the leaf of the
/// passthrough header. A header from any other peer is ignored: a client
/// can write any header. `Err` when a trusted proxy sent one that is not a
/// certificate chain (or sent it twice).
pub(crate) fn presented_certificate(
    tls: Option<&ClientCertificate>,
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &eos_logs::TrustedProxies,
) -> Result<Option<Vec<u8>>, ApiError> {
    if let Some(ClientCertificate(cert)) = tls {
        return Ok(Some(cert.as_ref().to_vec()));
    }
    if !trusted.contains(peer.to_canonical()) {
        return Ok(None);
    }
    let mut values = headers.get_all(PASSTHROUGH_CERT_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::renewal_refused(
            "renewal-bad-certificate",
            "the forwarded client certificate cannot be read".to_owned(),
            None,
        )
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let chain = eos_policy::chain_from_header(value.as_bytes()).ok_or_else(bad)?;
    Ok(chain.into_iter().next().map(|leaf| leaf.to_vec()))
}

async fn renew(
    State(st): State<Arc<AppState>>,
    axum::Extension(Client(client)): axum::Extension<Client>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls_cert: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let options = st.registrar.options();
    let presented = match presented_certificate(
        tls_cert.as_ref().map(|e| &e.0),
        peer.ip(),
        &headers,
        &options.trusted_proxies,
    ) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    let (limit, timeout) = (options.max_body_bytes, options.request_timeout);
    let shape = r#"{"csr": "PEM"}"#;
    let body = match tokio::time::timeout(
        timeout,
        read_json::<RenewBody>(&headers, body, limit, shape),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return error_response(e),
        Err(_) => return error_response(ApiError::timeout()),
    };
    match run_renewal(&st, presented, body.csr.into_bytes(), client).await {
        Ok(outcome) => axum::Json(outcome).into_response(),
        Err(e) => error_response(e),
    }
}

/// Run a renewal off the async workers ([`Registrar::renew`]: it holds the
/// store and may wait on the CA).
pub(crate) async fn run_renewal(
    st: &AppState,
    presented: Option<Vec<u8>>,
    csr: Vec<u8>,
    client: IpAddr,
) -> Result<Outcome, ApiError> {
    let registrar = st.registrar.clone();
    let outcome =
        tokio::task::spawn_blocking(move || registrar.renew(presented.as_deref(), &csr, client))
            .await;
    outcome.unwrap_or_else(|e| {
        tracing::error!(error = %e, "renewal task failed");
        Err(ApiError::internal())
    })
}

/// `GET /v1/renew`: what renewing the presented certificate would do, for
/// the page — whose it is, until when, and whether (or from when) it can be
/// renewed. Refused with the renewal's codes as `POST` would be, except
/// that a certificate not yet in its window is described, not refused.
async fn renewal_status(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls_cert: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
) -> Response {
    let presented = match presented_certificate(
        tls_cert.as_ref().map(|e| &e.0),
        peer.ip(),
        &headers,
        &st.registrar.options().trusted_proxies,
    ) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    let registrar = st.registrar.clone();
    let status =
        tokio::task::spawn_blocking(move || registrar.renewal_status(presented.as_deref())).await;
    match status {
        Ok(Ok(status)) => axum::Json(status).into_response(),
        Ok(Err(e)) => error_response(e),
        Err(e) => {
            tracing::error!(error = %e, "renewal status task failed");
            error_response(ApiError::internal())
        }
    }
}

/// Read the endpoint's body shape `T`, make the request from it, run it.
async fn endpoint<T: serde::de::DeserializeOwned>(
    st: Arc<AppState>,
    client: IpAddr,
    headers: &HeaderMap,
    body: Body,
    shape: &str,
    make: impl FnOnce(T) -> Result<Registration, ApiError>,
) -> Response {
    // The time limit covers reading the request (a slow or stalled body),
    // not the registration: once a code may be spent, the transaction runs
    // to its end and its answer is sent — a 408 after a commit would tell
    // the user to retry a code that is already used.
    let options = st.registrar.options();
    let (limit, timeout) = (options.max_body_bytes, options.request_timeout);
    let request =
        match tokio::time::timeout(timeout, read_json::<T>(headers, body, limit, shape)).await {
            Ok(read) => read.and_then(make),
            Err(_) => return error_response(ApiError::timeout()),
        };
    run(st, request, client).await
}

async fn run(
    st: Arc<AppState>,
    request: Result<Registration, ApiError>,
    client: IpAddr,
) -> Response {
    let request = match request {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    match execute(&st, request, client).await {
        Ok(outcome) => axum::Json(outcome).into_response(),
        Err(e) => error_response(e),
    }
}

/// Run a registration off the async workers (it holds the store and may
/// wait on the CA), and start the recovery notification when it was one.
pub(crate) async fn execute(
    st: &AppState,
    request: Registration,
    client: IpAddr,
) -> Result<Outcome, ApiError> {
    let registrar = st.registrar.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        registrar.execute(request, client, eos_codes::unix_now())
    })
    .await;
    match outcome {
        Ok(Ok(outcome)) => {
            if let Outcome::Recovered { .. } = &outcome {
                spawn_notification(st.registrar.clone(), &outcome);
            }
            Ok(outcome)
        }
        Ok(Err(e)) => Err(e),
        Err(e) => {
            tracing::error!(error = %e, "registration task failed");
            Err(ApiError::internal())
        }
    }
}

fn spawn_notification(registrar: Arc<Registrar>, outcome: &Outcome) {
    let Outcome::Recovered {
        space,
        user,
        cidr,
        replaced,
        code_id,
    } = outcome
    else {
        return;
    };
    let event = RecoveryEvent {
        event: "admin-recovery",
        space: space.to_string(),
        user: user.to_string(),
        cidr: cidr.clone(),
        replaced: replaced.clone(),
        code_id: code_id.clone(),
        at: eos_store::now_rfc3339(),
    };
    tokio::spawn(async move {
        let result = notify(&registrar.options().notify, &event).await;
        let (outcome, detail) = match &result {
            Ok(false) => return,
            Ok(true) => ("delivered", json!({"cidr": event.cidr})),
            Err(e) => {
                tracing::warn!(space = %event.space, user = %event.user, error = %e, "recovery notification failed");
                ("failed", json!({"cidr": event.cidr, "error": e}))
            }
        };
        let subject = format!("{} {}", event.space, event.user);
        let actor = eos_store::Actor::Code(event.code_id.as_str()).to_string();
        let _ = tokio::task::spawn_blocking(move || {
            let action = format!("register.recover.notify.{outcome}");
            let entry = eos_store::AuditEntry::new(&actor, &action, &subject).with_detail(detail);
            if let Err(e) = registrar.audit(&entry) {
                tracing::error!(error = %e, "auditing the recovery notification");
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_sources_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(limit_key(v4), v4);
    }

    #[test]
    fn unknown_paths_are_not_logged() {
        assert_eq!(route_name("/v1/ip"), "/v1/ip");
        assert_eq!(route_name("/v1/ip/EOS-SECRET"), "other");
    }
}
