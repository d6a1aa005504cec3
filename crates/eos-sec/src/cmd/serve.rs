//! `eos-sec serve`: the registration service (open zone) on the state
//! store, the security codes' pepper and, when one exists, the local CA —
//! `[serve]`, `[codes]` and `[ca]` turned into an `eos_register::Launch`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use eos_register::{Launch, SyncTask, shutdown_pair};

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
/// configured backend, beside the server and stopped with it, its figures
/// on `/metrics`.
fn sync_task(ctx: &crate::Ctx) -> anyhow::Result<Option<SyncTask>> {
    if !ctx.config.serve.sync {
        return Ok(None);
    }
    let backend = super::plan::runtime()?.block_on(super::plan::open_backend(
        ctx,
        &super::plan::BackendArgs::default(),
    ))?;
    let mut opts = eos_ops::sync::options(super::plan::plan_options(ctx)?, &backend, None);
    opts.lease = ctx.config.sync.lease;
    let id = eos_plan::IpSetBackend::id(&backend);
    let store = ctx.store()?;
    // A task on the service's runtime: the watcher's future is `Send`.
    let task: eos_register::BackgroundTask = Box::new(move |shutdown| {
        Box::pin(async move {
            eos_ops::sync::watch(store, backend, opts, shutdown.wait())
                .await
                .map_err(|e| format!("sync stopped: {e}"))
        })
    });
    Ok(Some(SyncTask { task, backend: id }))
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
    let mut launch = Launch::new(listen, ctx.store()?, ring, backoff, options);
    if let Some((cert, key)) = tls_files {
        launch = launch.tls(cert, key);
    }
    if let Some(ca) = ca {
        launch = launch.ca(ca);
    }
    init_logging(ctx);
    if let Some(sync) = sync_task(ctx)? {
        launch = launch.sync(sync);
    }
    runtime.block_on(async move {
        let bound = launch.bind().await?;
        let (trigger, shutdown) = shutdown_pair();
        trigger.on_signals();
        Ok(bound.serve(shutdown).await?)
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
