//! `eos-sec authz serve`: the decision point behind a proxy (nginx
//! `auth_request`, an ALB in passthrough mode). Every decision is
//! `eos_authz::decide`, i.e. `eos_policy`'s evaluation on the same inputs
//! `policy eval` reads: the policy file, its trust bundle and CRLs, and the
//! sets on the configured backend (or `--set` files).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_authz::{Listen, Listener, Live, Metrics, Source};
use eos_logs::TrustedProxies;

use crate::cmd::plan::{open_backend, runtime};
use crate::cmd::policy::{PolicySource, backend_sets, merge_set_overrides};
use crate::exit::bad_input;

/// The decision point for proxies.
#[derive(Debug, Subcommand)]
pub enum AuthzCommand {
    /// Answer a proxy's auth subrequests (nginx `auth_request`) with the
    /// policy's decision: 200 with X-Eos-Space/-User/-Gate, or 401/403
    Serve(ServeArgs),
    /// Print a proxy configuration wired to the decision service
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// Proxy configurations.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// nginx (http context): TLS with optional client certificates,
    /// `auth_request` to the decision service, forged headers stripped
    Nginx(ProxyArgs),
    /// Caddy (a whole Caddyfile): TLS with optional client certificates,
    /// `forward_auth` to the decision service, forged headers stripped
    Caddy(ProxyArgs),
}

/// Arguments of `authz config nginx|caddy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where the proxy listens for clients (TLS)
    #[arg(long, default_value = "0.0.0.0:443")]
    pub listen: SocketAddr,
    /// Server name (repeatable), e.g. `*.entityos.cloud`
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_names: Vec<String>,
    /// The proxy's certificate chain (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// The proxy's private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// The entityOS CA bundle (`eos-sec ca bundle`), advertised to clients
    #[arg(long, value_name = "FILE")]
    pub client_ca: PathBuf,
    /// The decision service's address, `host:port` or `unix:/path`
    /// [default: `[authz] listen`, else 127.0.0.1:9180]
    #[arg(long, value_name = "ADDRESS")]
    pub authz: Option<Listen>,
    /// The protected application, e.g. http://127.0.0.1:8080
    #[arg(long, value_name = "URL")]
    pub upstream: String,
}

/// Arguments of `authz serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (plain HTTP, for the proxy only): `host:port`,
    /// or `unix:/path` for a proxy on this host — a socket of mode 0660,
    /// whose every peer is a trusted proxy [default: `[authz] listen`, else
    /// 127.0.0.1:9180]
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<Listen>,
    #[command(flatten)]
    pub source: PolicySource,
    /// A proxy whose X-Forwarded-For and client-certificate headers are
    /// believed (CIDR or address, repeatable) [default: `[authz]
    /// trusted_proxies`, else `[logs] trusted_proxies`]; from any other peer
    /// the peer is the client and no certificate was presented
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxy: Vec<String>,
    /// How often the policy, trust bundle, CRLs and sets are checked for
    /// changes; a revocation is enforced within this interval [default:
    /// `[authz] reload_interval`, else 1s]
    #[arg(long, value_name = "DURATION")]
    pub reload_interval: Option<String>,
    /// Most connections served at once [default: `[authz]
    /// max_connections`, else 1024]
    #[arg(long)]
    pub max_connections: Option<usize>,
}

pub fn run(cmd: AuthzCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        AuthzCommand::Serve(a) => serve(a, ctx),
        AuthzCommand::Config(ConfigCommand::Nginx(a)) => {
            crate::output::emit(&eos_authz::nginx_config(&proxy_config(a, ctx)?))
        }
        AuthzCommand::Config(ConfigCommand::Caddy(a)) => {
            crate::output::emit(&eos_authz::caddy_config(&proxy_config(a, ctx)?))
        }
    }
}

fn serve(a: ServeArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let conf = &ctx.config.authz;
    let mut options = conf.options(&ctx.config.logs.trusted_proxies);
    let interval = match &a.reload_interval {
        None => conf.reload_interval,
        Some(s) => {
            let d =
                eos_codes::duration::parse(s).map_err(|e| bad_input!("--reload-interval: {e}"))?;
            if d.is_zero() {
                return Err(bad_input!("--reload-interval must be more than zero"));
            }
            d
        }
    };
    if !a.trusted_proxy.is_empty() {
        options.trusted_proxies = TrustedProxies::parse(&a.trusted_proxy)
            .map_err(|e| bad_input!("--trusted-proxy: {e}"))?;
    }
    if let Some(max) = a.max_connections {
        if max == 0 {
            return Err(bad_input!("--max-connections must be at least 1"));
        }
        options.max_connections = max;
    }
    let listen = a.listen.unwrap_or_else(|| conf.listen.clone());
    let policy = a
        .source
        .policy
        .clone()
        .or_else(|| ctx.config.policy.file.clone())
        .unwrap_or_else(|| PathBuf::from("policy.toml"));
    // The sets are read on the reload thread, with a runtime of its own.
    let rt = runtime()?;
    let backend = rt.block_on(open_backend(ctx, &a.source.backend))?;
    let set_args = a.source.sets.clone();
    let sets: eos_authz::LoadSets = Box::new(move |policy| {
        let mut sets = rt
            .block_on(backend_sets(&backend, policy))
            .map_err(|e| format!("{e:#}"))?;
        merge_set_overrides(&mut sets, &set_args).map_err(|e| format!("{e:#}"))?;
        Ok(sets)
    });
    crate::cmd::serve::init_logging(ctx);
    let metrics = Arc::new(Metrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (live, reloader) = Live::start(
        Source {
            policy,
            sets,
            chain_cache: conf.chain_cache,
        },
        interval,
        metrics.clone(),
        stop.clone(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = Listener::bind(&listen)
            .await
            .map_err(|e| bad_input!("{e}"))?;
        let local = listener.local();
        tracing::info!(
            address = %local,
            reload_interval_s = interval.as_secs(),
            trusted_proxies = ?options.trusted_proxies.nets(),
            "eos-sec authz listening"
        );
        eos_authz::serve(listener, live, metrics, options, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    stop.store(true, Ordering::Relaxed);
    // The reload thread sleeps at most one interval before it sees `stop`.
    let _ = reloader.join();
    tracing::info!("eos-sec authz stopped");
    Ok(())
}

fn proxy_config(a: ProxyArgs, ctx: &crate::Ctx) -> anyhow::Result<eos_authz::ProxyConfig> {
    // nginx resolves relative paths against its prefix, Caddy against its
    // working directory, not the shell's: write them absolute.
    let abs = |p: &std::path::Path| {
        std::path::absolute(p).map_err(|e| bad_input!("{}: {e}", p.display()))
    };
    if !(a.upstream.starts_with("http://") || a.upstream.starts_with("https://"))
        || a.upstream
            .contains(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}')
    {
        return Err(bad_input!(
            "--upstream `{}`: expected an http:// or https:// URL",
            a.upstream
        ));
    }
    for n in &a.server_names {
        if n.is_empty()
            || n.contains(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}')
        {
            return Err(bad_input!("--server-name `{n}`: not a server name"));
        }
    }
    // Written unquoted into the configuration: a space, `;`, `{`, `}` or
    // `"` would end the value early.
    let file = |flag: &str, p: &std::path::Path| {
        let p = abs(p)?;
        if p.to_str().is_none_or(|s| {
            s.contains(|c: char| c.is_whitespace() || matches!(c, ';' | '{' | '}' | '"'))
        }) {
            return Err(bad_input!(
                "{flag} `{}`: a path with whitespace, `;`, `{{`, `}}` or `\"` cannot be written into a proxy configuration",
                p.display()
            ));
        }
        Ok(p)
    };
    let config = eos_authz::ProxyConfig {
        listen: a.listen,
        server_names: a.server_names,
        tls_cert: file("--tls-cert", &a.tls_cert)?,
        tls_key: file("--tls-key", &a.tls_key)?,
        client_ca: file("--client-ca", &a.client_ca)?,
        authz: a.authz.unwrap_or_else(|| ctx.config.authz.listen.clone()),
        upstream: a.upstream,
    };
    Ok(config)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let (trigger, shutdown) = eos_register::shutdown_pair();
    trigger.on_signals();
    shutdown.wait().await;
}
