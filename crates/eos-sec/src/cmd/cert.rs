//! `eos-sec cert ...`: the client side of a certificate of the entityOS
//! CA. `cert renew` is the renew agent (`eos_register::agent`): once, or as
//! a daemon that keeps the files fresh and reloads what uses them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_register::agent::{self, AgentOptions, Files, Hook};

use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// Client certificates of the entityOS CA.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Renew a certificate with itself (`POST /v1/renew`, no security
    /// code): once, or with --daemon at about two thirds of each lifetime
    Renew(RenewArgs),
}

/// Arguments of `cert renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The certificate to renew, PEM; replaced by its successor (atomically)
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key, PKCS#8 PEM; replaced with --rekey (atomically, mode
    /// 0600)
    #[arg(long)]
    pub key: PathBuf,
    /// The registration service, e.g. https://register.example (`/v1/renew`
    /// is appended)
    #[arg(long)]
    pub url: String,
    /// The CA that signed the service's TLS certificate, PEM [default: the
    /// system's roots]
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// A new P-256 key for each renewal instead of the same key
    #[arg(long)]
    pub rekey: bool,
    /// Keep renewing: at 70-75% of each certificate's lifetime (jitter),
    /// failures retried with backoff; stops cleanly on SIGTERM or SIGINT
    #[arg(long)]
    pub daemon: bool,
    /// Shell command run after each renewal, e.g. "systemctl reload nginx";
    /// it gets EOS_SEC_CERT, EOS_SEC_KEY, EOS_SEC_SERIAL, EOS_SEC_RENEWED,
    /// EOS_SEC_NOT_AFTER
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// How long the --exec command may run before it is killed
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub exec_timeout: String,
    /// How long one renewal request may take, connect to answer
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub timeout: String,
}

pub fn run(cmd: CertCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Renew(a) => renew(a, ctx),
    }
}

fn duration(s: &str, what: &str) -> anyhow::Result<Duration> {
    let d = eos_codes::duration::parse(s).map_err(|e| bad_input!("{what}: {e}"))?;
    if d.is_zero() {
        return Err(bad_input!("{what}: must be above 0"));
    }
    Ok(d)
}

fn renew(a: RenewArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let server_ca = a
        .ca_bundle
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| bad_input!("--ca-bundle {}: cannot read: {e}", p.display()))
        })
        .transpose()?;
    let mut opts = AgentOptions::new(a.url, server_ca);
    opts.request_timeout = duration(&a.timeout, "--timeout")?;
    opts.connect_timeout = opts.connect_timeout.min(opts.request_timeout);
    opts.read_timeout = opts.read_timeout.min(opts.request_timeout);
    let hook = a
        .exec
        .map(|command| {
            Ok::<_, anyhow::Error>(Hook {
                command,
                timeout: duration(&a.exec_timeout, "--exec-timeout")?,
            })
        })
        .transpose()?;
    let files = Files {
        cert: a.cert,
        key: a.key,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if a.daemon {
        return runtime.block_on(async {
            let (trigger, shutdown) = eos_register::shutdown_pair();
            trigger.on_signals();
            agent::run_daemon(
                &opts,
                &files,
                a.rekey,
                hook.as_ref(),
                |_| {},
                shutdown.wait(),
            )
            .await?;
            tracing::info!("renew agent stopped");
            Ok(())
        });
    }
    let renewed = runtime.block_on(agent::renew_once(&opts, &files, a.rekey))?;
    let hooked = match &hook {
        Some(h) => runtime.block_on(h.run(&files, &renewed)),
        None => Ok(()),
    };
    if ctx.json {
        emit_json(&renewed)?;
    } else {
        emit(&format!(
            "renewed {} as {}, valid until {}{}\nwrote {}{}\n",
            renewed.renewed,
            renewed.serial,
            renewed.not_after,
            if renewed.rekeyed { " (new key)" } else { "" },
            files.cert.display(),
            if renewed.rekeyed {
                format!(" and {}", files.key.display())
            } else {
                String::new()
            },
        ))?;
    }
    hooked.map_err(|e| anyhow::anyhow!("the certificate was renewed, but {e}"))
}
