//! Listening: plain TCP or TLS (rustls, ring provider), HTTP/1.1 and
//! HTTP/2, header-read timeout, graceful shutdown on a signal, and room for
//! a background task (the sync engine) that lives and stops with the server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::RegisterError;
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
/// must not be readable by group or others.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, RegisterError> {
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
    server_config(chain, key_der).map_err(|e| tls_err(cert, e))
}

/// A server config from DER (tests make these in memory).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
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
    /// stop accepting, let requests in flight finish for the configured
    /// grace time, and return. A `background` task is started with its own
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
        let graceful = GracefulShutdown::new();
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
                    let _ = tcp.set_nodelay(true);
                    let router = router.clone();
                    let acceptor = acceptor.clone();
                    let watcher = graceful.watcher();
                    let header_timeout = options.header_timeout;
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                            router.clone().oneshot(req)
                        });
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        builder
                            .http1()
                            .timer(TokioTimer::new())
                            .header_read_timeout(header_timeout);
                        builder.http2().timer(TokioTimer::new());
                        match acceptor {
                            Some(acceptor) => {
                                let stream = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => return,
                                };
                                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                                let _ = watcher.watch(conn).await;
                            }
                            None => {
                                let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                                let _ = watcher.watch(conn).await;
                            }
                        }
                    });
                }
            }
        }
        drop(listener);
        bg_trigger.trigger();
        tracing::info!("shutting down: waiting for requests in flight");
        if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_s = options.shutdown_grace.as_secs(),
                "requests still in flight after the grace time; closing them"
            );
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
