//! `eos-sec serve`: the registration service (open zone) on the state
//! store, the security codes' pepper and, when one exists, the local CA.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use eos_register::{BackgroundTask, Registrar, Service, shutdown_pair};

use crate::exit::bad_input;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: `[serve] listen`, else 127.0.0.1:8443]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain, PEM [default: `[serve] tls_cert`; without one
    /// the service speaks plain HTTP, for a load balancer that terminates
    /// TLS]
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM, mode 0600 [default: `[serve] tls_key`]
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// With `[serve] sync = true`, the sync watcher (docs/SYNC.md) on the
/// configured backend, beside the server and stopped with it; and the id of
/// that backend, whose figures `/metrics` serves.
fn background_task(ctx: &crate::Ctx) -> anyhow::Result<Option<(BackgroundTask, String)>> {
    if !ctx.config.serve.sync {
        return Ok(None);
    }
    let mut opts = eos_sync::SyncOptions::new(super::plan::plan_options(ctx)?);
    let backend = super::plan::runtime()?.block_on(super::plan::open_backend(
        ctx,
        &super::plan::BackendArgs::default(),
    ))?;
    opts.write_interval = super::sync::default_write_interval(&backend);
    let id = eos_plan::IpSetBackend::id(&backend);
    let store = ctx.store()?;
    let task: BackgroundTask = Box::new(move |shutdown| {
        Box::pin(super::sync::watch_on_thread(
            store,
            backend,
            opts,
            shutdown.wait(),
        ))
    });
    Ok(Some((task, id)))
}

pub fn run(a: ServeArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let conf = &ctx.config.serve;
    let mut options = conf.options()?;
    if conf.trusted_proxies.is_none() {
        // The service sits behind the same proxies its logs come through.
        options.trusted_proxies = ctx.config.logs.trusted_proxies.clone();
    }
    let listen = a.listen.unwrap_or(conf.listen);
    let tls_files = match (
        a.tls_cert.or(conf.tls_cert.clone()),
        a.tls_key.or(conf.tls_key.clone()),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(bad_input!(
                "[serve] tls_cert and tls_key go together: set both or neither"
            ));
        }
    };
    let ring = super::code::load_ring(&ctx.config.codes)?;
    let backoff = ctx.config.codes.backoff()?;
    // The runtime comes first: an AWS Private CA client is made on the
    // runtime whose workers will drive its connections.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ca = super::ca::load_setup(ctx, &runtime)?;
    // With a CA, the listener asks for an optional client certificate of
    // it: `/v1/renew` renews the one presented.
    let client_ca = ca.as_ref().map(|ca| ca.chain_pem());
    let tls = tls_files
        .as_ref()
        .map(|(c, k)| eos_register::load_tls(c, k, client_ca))
        .transpose()?;
    let store = ctx.store()?;
    init_logging(ctx);
    match &ca {
        Some(ca) => tracing::info!(signer = ca.signer_id(), "/v1/cert issues certificates"),
        None => tracing::warn!("no CA in the state directory: /v1/cert answers ca-unavailable"),
    }
    if options.notify == eos_register::NotifyHook::None {
        tracing::warn!(
            "no recovery notification hook configured ([serve] recovery_notify_command or recovery_notify_webhook)"
        );
    }
    let mut registrar = Registrar::new(store, ring, backoff, ca, options);
    let background = match background_task(ctx)? {
        Some((task, backend)) => {
            tracing::info!(%backend, "sync watcher runs beside the service; figures on /metrics");
            registrar = registrar.with_sync_metrics(backend);
            Some(task)
        }
        None => None,
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| bad_input!("cannot listen on {listen}: {e}"))?;
        let local = listener.local_addr().unwrap_or(listen);
        tracing::info!(address = %local, tls = tls.is_some(), "eos-sec serve listening");
        let (trigger, shutdown) = shutdown_pair();
        trigger.on_signals();
        Service::new(registrar)
            .serve(listener, tls, shutdown, background)
            .await?;
        tracing::info!("eos-sec serve stopped");
        Ok(())
    })
}

/// Structured logs on stderr: JSON lines, level from `EOS_SEC_LOG`
/// (`info` by default, moved by `-q`/`-v`). Request bodies, codes and keys
/// are never logged.
pub fn init_logging(ctx: &crate::Ctx) {
    let filter = crate::log::filter(crate::log::Level::Info, ctx.verbosity);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
