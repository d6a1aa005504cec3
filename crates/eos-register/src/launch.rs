//! The registration service in one call: what `eos-sec serve` assembles
//! from its configuration — the state store, the security codes' pepper
//! ring and backoff, the CA (`eos_ops::ca`, local key or AWS Private CA),
//! TLS that asks for an optional client certificate of that CA (for
//! `/v1/renew`), an optional background task such as the sync watcher — so
//! another Rust service runs the open zone the same way.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path, ring: eos_codes::PepperRing) -> Result<(), Box<dyn std::error::Error>> {
//! use eos_register::{Launch, ServeOptions, shutdown_pair};
//! let store = eos_store::Store::open(dir)?;
//! let launch = Launch::new(
//!     "127.0.0.1:8443".parse()?,
//!     store,
//!     ring,
//!     eos_codes::BackoffPolicy::default(),
//!     ServeOptions::default(),
//! );
//! let bound = launch.bind().await?;
//! println!("listening on {}", bound.local_addr());
//! let (trigger, shutdown) = shutdown_pair();
//! trigger.on_signals();
//! bound.serve(shutdown).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use eos_codes::{BackoffPolicy, PepperRing};
use eos_ops::issuance::CaSetup;
use eos_store::Store;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::{
    BackgroundTask, NotifyHook, RegisterError, Registrar, ServeOptions, Service, Shutdown, load_tls,
};

/// A task run beside the service whose figures `/metrics` serves: the sync
/// watcher on the backend `backend` (its id).
pub struct SyncTask {
    /// The task, stopped with the service.
    pub task: BackgroundTask,
    /// The backend's id.
    pub backend: String,
}

impl std::fmt::Debug for SyncTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTask")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// What the registration service runs on.
#[derive(Debug)]
pub struct Launch {
    listen: SocketAddr,
    store: Store,
    ring: PepperRing,
    backoff: BackoffPolicy,
    options: ServeOptions,
    tls: Option<(PathBuf, PathBuf)>,
    ca: Option<CaSetup>,
    sync: Option<SyncTask>,
}

impl Launch {
    /// Plain HTTP (for a load balancer that terminates TLS) on `listen`,
    /// with no CA (`/v1/cert` answers `ca-unavailable`) and no background
    /// task.
    pub fn new(
        listen: SocketAddr,
        store: Store,
        ring: PepperRing,
        backoff: BackoffPolicy,
        options: ServeOptions,
    ) -> Launch {
        Launch {
            listen,
            store,
            ring,
            backoff,
            options,
            tls: None,
            ca: None,
            sync: None,
        }
    }

    /// TLS with this certificate chain and key (PEM; the key not readable
    /// by group or others).
    pub fn tls(mut self, cert: PathBuf, key: PathBuf) -> Launch {
        self.tls = Some((cert, key));
        self
    }

    /// Issue certificates with `ca`; the TLS listener then asks for an
    /// optional client certificate of it, which `/v1/renew` renews.
    pub fn ca(mut self, ca: CaSetup) -> Launch {
        self.ca = Some(ca);
        self
    }

    /// Run `sync` beside the service and serve its figures on `/metrics`.
    pub fn sync(mut self, sync: SyncTask) -> Launch {
        self.sync = Some(sync);
        self
    }

    /// Load TLS, make the registrar and bind the listener (an address that
    /// cannot be bound is a configuration error).
    pub async fn bind(self) -> Result<Bound, RegisterError> {
        let Launch {
            listen,
            store,
            ring,
            backoff,
            options,
            tls,
            ca,
            sync,
        } = self;
        let client_ca = ca.as_ref().map(CaSetup::chain_pem);
        let tls = tls
            .as_ref()
            .map(|(c, k)| load_tls(c, k, client_ca))
            .transpose()?;
        match &ca {
            Some(ca) => tracing::info!(signer = ca.signer_id(), "/v1/cert issues certificates"),
            None => tracing::warn!("no CA in the state directory: /v1/cert answers ca-unavailable"),
        }
        if options.notify == NotifyHook::None {
            tracing::warn!(
                "no recovery notification hook configured ([serve] recovery_notify_command or recovery_notify_webhook)"
            );
        }
        let mut registrar = Registrar::new(store, ring, backoff, ca, options);
        let background = match sync {
            Some(SyncTask { task, backend }) => {
                tracing::info!(%backend, "sync watcher runs beside the service; figures on /metrics");
                registrar = registrar.with_sync_metrics(backend);
                Some(task)
            }
            None => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| RegisterError::Config(format!("cannot listen on {listen}: {e}")))?;
        let local = listener.local_addr().unwrap_or(listen);
        tracing::info!(address = %local, tls = tls.is_some(), "eos-sec serve listening");
        Ok(Bound {
            listener,
            local,
            tls,
            registrar,
            background,
        })
    }
}

/// The service bound to its address, ready to serve.
pub struct Bound {
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    registrar: Registrar,
    background: Option<BackgroundTask>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("local", &self.local)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Bound {
    /// The address it listens on (the port chosen when `listen` had 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serve until `shutdown` ([`Service::serve`]).
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), RegisterError> {
        Service::new(self.registrar)
            .serve(self.listener, self.tls, shutdown, self.background)
            .await?;
        tracing::info!("eos-sec serve stopped");
        Ok(())
    }
}
