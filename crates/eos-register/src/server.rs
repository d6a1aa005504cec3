//! Listening: plain TCP or TLS (rustls, ring provider), HTTP/1.1 and
//! HTTP/2, connection caps and a deadline for every phase (`conn`), graceful
//! shutdown on a signal, and room for a background task (the sync engine)
//! that lives and stops with the server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::RegisterError;
use crate::config::ServeOptions;
use crate::conn::{Activity, ConnectionCaps, IdleTimeouts, drive};
use crate::http;
use crate::registrar::Registrar;

/// Tells everything started by [`Service::serve`] to stop.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<watch::Sender<bool>>);

/// Waits for the trigger. Cheap to clone; hand one to each background task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and its first receiver.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(Arc::new(tx)), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Begin shutdown.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    /// Trigger on SIGTERM or Ctrl-C (SIGINT).
    pub fn on_signals(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                match term {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = ctrl_c => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = ctrl_c.await;
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutdown signal received");
            self.trigger();
        })
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn wait(mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }

    /// Has shutdown been triggered?
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// A task that runs alongside the server (e.g. the sync engine) and stops
/// when given [`Shutdown`] resolves. An `Err` stops the server too.
pub type BackgroundTask =
    Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send>;

/// Load a TLS certificate chain and key (PEM) into a server config with
/// the ring provider, TLS 1.2 and 1.3, ALPN h2 and http/1.1. The key file
/// must not be readable by group or others. With `client_ca` (the
/// entityOS CA chain, PEM) the listener asks for an optional client
/// certificate of that CA ([`server_config`]).
pub fn load_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&str>,
) -> Result<Arc<ServerConfig>, RegisterError> {
    let tls_err = |path: &Path, reason: String| RegisterError::Tls {
        path: path.display().to_string(),
        reason,
    };
    check_key_mode(key).map_err(|r| tls_err(key, r))?;
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(tls_err(cert, "no CERTIFICATE block".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
    server_config(chain, key_der, client_ca).map_err(|e| tls_err(cert, e))
}

/// A server config from DER (tests make these in memory). With
/// `client_ca` (PEM, the entityOS CA chain), the handshake asks for a
/// client certificate of that CA and verifies it with rustls-webpki (chain,
/// signature, validity, client-auth EKU) and the client's proof of its key;
/// a client may also present none (`allow_unauthenticated`: the code-based
/// endpoints and the page need none). The verified certificate reaches the
/// handlers as [`ClientCertificate`] (`/v1/renew`).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&str>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("client CA: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("client CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("client CA: no CERTIFICATE block".to_owned());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client certificate verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(unix)]
fn check_key_mode(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others read the key; chmod 600 it"
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_mode(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// The client certificate the TLS handshake verified (the leaf, DER), in
/// the request's extensions when the client presented one. Only the
/// listener puts it there: a header never becomes one.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Arc<CertificateDer<'static>>);

/// The registration service: a [`Registrar`] behind the HTTP guard and
/// routes.
#[derive(Debug, Clone)]
pub struct Service {
    registrar: Arc<Registrar>,
}

impl Service {
    /// A service over a registrar.
    pub fn new(registrar: Registrar) -> Service {
        Service {
            registrar: Arc::new(registrar),
        }
    }

    /// The registrar (for callers that share it).
    pub fn registrar(&self) -> &Arc<Registrar> {
        &self.registrar
    }

    /// The routes, for embedding in another server. Requests must carry
    /// `ConnectInfo<SocketAddr>` (as [`Service::serve`] adds).
    pub fn router(&self, tls: bool) -> Router {
        http::router(http::state(self.registrar.clone(), tls))
    }

    /// Serve on `listener` (TLS when `tls` is given) until `shutdown`, then
    /// stop accepting, close idle connections at once, let requests in
    /// flight finish for the configured grace time, and return. A `background` task is started with its own
    /// [`Shutdown`] and awaited on the way out; if it fails, the server
    /// shuts down and the error is returned.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        shutdown: Shutdown,
        background: Option<BackgroundTask>,
    ) -> Result<(), RegisterError> {
        let options = self.registrar.options().clone();
        let state = http::state(self.registrar.clone(), tls.is_some());
        let router = http::router(state.clone());
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let caps = ConnectionCaps::new(
            options.connections.max_connections,
            options.connections.max_connections_per_source,
        );
        let builder = http_builder(&options);
        // Connections stop on this, whatever ended the accept loop.
        let (conn_trigger, conn_shutdown) = shutdown_pair();
        let mut conns = tokio::task::JoinSet::new();
        let (bg_trigger, bg_shutdown) = shutdown_pair();
        let mut bg = background.map(|task| tokio::spawn(task(bg_shutdown)));
        let mut prune = tokio::time::interval(Duration::from_secs(60));
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut failure = None;
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = prune.tick() => state.prune(),
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                done = async { match bg.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                    bg = None;
                    match done {
                        Ok(Ok(())) => tracing::info!("background task finished"),
                        Ok(Err(e)) => { tracing::error!(error = %e, "background task failed; shutting down"); failure = Some(e); break; }
                        Err(e) => { tracing::error!(error = %e, "background task panicked; shutting down"); failure = Some(e.to_string()); break; }
                    }
                }
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // One form per client from here on: a dual-stack
                    // listener reports IPv4 peers as ::ffff:a.b.c.d.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    // A trusted proxy carries many clients: only the total
                    // cap applies to it.
                    let source = (!options.trusted_proxies.contains(peer.ip()))
                        .then(|| http::limit_key(peer.ip()));
                    let admission = match caps.admit(source) {
                        Ok(a) => a,
                        Err(refused) => {
                            tracing::debug!(peer = %peer.ip(), ?refused, "connection refused: over the connection cap");
                            drop(tcp);
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let connection = Connection {
                        router: router.clone(),
                        builder: builder.clone(),
                        peer,
                        timeouts: IdleTimeouts {
                            first_request: options.header_timeout,
                            between_requests: options.connections.idle_timeout,
                        },
                        stop: conn_shutdown.clone(),
                        client_cert: None,
                    };
                    let acceptor = acceptor.clone();
                    let handshake_timeout = options.connections.handshake_timeout;
                    conns.spawn(async move {
                        let _admission = admission;
                        match acceptor {
                            Some(acceptor) => {
                                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(peer = %peer.ip(), "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let client_cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| ClientCertificate(Arc::new(c.clone().into_owned())));
                                Connection { client_cert, ..connection }.serve(stream).await;
                            }
                            None => connection.serve(tcp).await,
                        }
                    });
                }
            }
        }
        drop(listener);
        bg_trigger.trigger();
        conn_trigger.trigger();
        tracing::info!(
            connections = conns.len(),
            "shutting down: waiting for requests in flight"
        );
        let drained = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(options.shutdown_grace, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_s = options.shutdown_grace.as_secs(),
                "requests still in flight after the grace time; closing them"
            );
            conns.shutdown().await;
        }
        if let Some(handle) = bg {
            match tokio::time::timeout(options.shutdown_grace, handle).await {
                Ok(Ok(Err(e))) => failure = Some(e),
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(_) => tracing::warn!("background task did not stop within the grace time"),
                Ok(Ok(Ok(()))) => {}
            }
        }
        match failure {
            Some(e) => Err(RegisterError::Background(e)),
            None => Ok(()),
        }
    }
}

/// The HTTP/1 and HTTP/2 settings every connection is served with.
fn http_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header timer runs from the moment it waits for a
    // request head, so it also bounds an idle keep-alive connection.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    // Pings find a peer that vanished during a long request; an idle but
    // live HTTP/2 peer is closed by the connection's idle deadline.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.connections.idle_timeout)
        .keep_alive_timeout(options.header_timeout);
    builder
}

/// What one accepted connection is served with.
struct Connection {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    peer: SocketAddr,
    timeouts: IdleTimeouts,
    stop: Shutdown,
    /// What the TLS handshake verified, for every request on it.
    client_cert: Option<ClientCertificate>,
}

impl Connection {
    /// Serve HTTP/1 or HTTP/2 on `io` until the client is done, the
    /// connection has been idle past its deadline, or shutdown.
    async fn serve<IO>(self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            builder,
            peer,
            timeouts,
            stop,
            client_cert,
        } = self;
        let (activity, busy) = Activity::new();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            if let Some(cert) = &client_cert {
                req.extensions_mut().insert(cert.clone());
            }
            // In flight until the response body is dropped: sent, or
            // abandoned with the connection.
            let in_flight = activity.enter();
            let response = router.clone().oneshot(req);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    body.map_frame(move |frame| {
                        let _in_flight = &in_flight;
                        frame
                    })
                }))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        drive(
            conn.as_mut(),
            |c| c.graceful_shutdown(),
            busy,
            stop.wait(),
            timeouts,
        )
        .await;
    }
}
