//! `eos-sec`: the thin command line over the eos-sec libraries. Argument
//! parsing, wiring and output only; every decision is made in a library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod config;
mod exit;
mod log;
mod output;

use exit::bad_input;

/// IP allowlists (AWS WAF IPSets) and mTLS client certificates for
/// entityOS.cloud spaces.
#[derive(Debug, Parser)]
#[command(name = "eos-sec", version = env!("EOS_SEC_VERSION"), about, long_about = None, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of the human report
    #[arg(long, global = true)]
    json: bool,

    /// Log nothing on stderr but the error that ends a failed command
    /// [EOS_SEC_LOG, when set, decides]
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 900
    )]
    quiet: bool,

    /// Log more on stderr: -v warn, -vv info, -vvv debug [default: error;
    /// info for serve, authz serve, sync --watch, cert renew --daemon]
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 901)]
    verbose: u8,

    /// State directory (SQLite database and exports) [default: `[state] dir`
    /// from the config, else ./.eos-sec]
    #[arg(long, global = true, env = "EOS_SEC_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Config file (TOML) [default: the first of ./eos-sec.toml,
    /// $XDG_CONFIG_HOME/eos-sec/eos-sec.toml, /etc/eos-sec/eos-sec.toml]
    #[arg(long, global = true, env = "EOS_SEC_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exact IP sets: aggregate addresses and CIDRs to the minimal CIDR list
    #[command(subcommand)]
    Ipset(cmd::ipset::IpsetCommand),
    /// Security codes: issue, list, revoke, verify; rotate the pepper
    #[command(subcommand)]
    Code(cmd::code::CodeCommand),
    /// The entityOS CA: sign client certificates from CSRs, revoke, CRL,
    /// trust bundle
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Client certificates of the entityOS CA: renew one with itself, once
    /// or as a daemon
    #[command(subcommand)]
    Cert(cmd::cert::CertCommand),
    /// The restricted firewall: compile to WAFv2, evaluate, simulate
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Access logs: who calls each space (usage, ALB, CloudFront, WAF logs)
    #[command(subcommand)]
    Logs(cmd::logs::LogsCommand),
    /// Scan logs, import rules, stage the desired IPSets (referenced by no
    /// rule) and report what they contain and why
    Bootstrap(cmd::bootstrap::BootstrapArgs),
    /// Declared Network Access Rules: add, list, remove, import
    #[command(subcommand)]
    Rules(cmd::rules::RulesCommand),
    /// Compare the desired IPSets (rules + evidence) with the backend's
    Plan(cmd::plan::PlanArgs),
    /// Apply a saved plan exactly, or plan, show, confirm and apply
    Apply(cmd::plan::ApplyArgs),
    /// Move a space one stage forward (staged, count, enforce), with lockout
    /// guards and a snapshot before every change
    Enforce(cmd::enforce::EnforceArgs),
    /// Restore the Web ACL snapshot taken before a space's latest enforce
    Rollback(cmd::enforce::RollbackArgs),
    /// Deliver declared rule changes to the IPSets (one pass, or --watch);
    /// `sync status`
    Sync(cmd::sync::SyncArgs),
    /// The state store: copy the SQLite state directory into PostgreSQL
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// The certificate gate at the edge: publish the CA's bundle and CRL to
    /// S3, ALB trust stores and API Gateway domains; `gate status`
    #[command(subcommand)]
    Gate(cmd::gate::GateCommand),
    /// The registration service (open zone): IP, certificate and admin
    /// recovery over HTTPS, and its page
    Serve(cmd::serve::ServeArgs),
    /// The decision point behind a proxy: nginx `auth_request` answered
    /// with the policy's decision (address or certificate, per space)
    #[command(subcommand)]
    Authz(cmd::authz::AuthzCommand),
    /// Print a shell completion script for eos-sec (bash, zsh, fish,
    /// elvish, powershell)
    Completions(cmd::cli::CompletionsArgs),
    /// Print eos-sec's manual page (roff), or write one page per command
    /// into a directory
    Man(cmd::cli::ManArgs),
    /// Drills that prove a gate works: revoke a throwaway certificate and
    /// time until the target refuses it
    #[command(subcommand)]
    Drill(cmd::drill::DrillCommand),
}

/// What every command gets besides its own arguments.
#[derive(Debug)]
pub struct Ctx {
    /// `--json`.
    pub json: bool,
    /// The loaded config.
    pub config: config::Config,
    /// The state directory to use.
    pub state_dir: PathBuf,
    /// `-v` minus `-q`: how far to move the default log level.
    pub verbosity: i8,
}

impl Ctx {
    /// Where the state store is: `EOS_SEC_STORE_URL`, else `[store] url`,
    /// else SQLite in the state directory. A URL that cannot be used is bad
    /// input (exit 2); the message never repeats the URL (it may hold a
    /// password).
    pub fn store_location(&self) -> anyhow::Result<eos_store::StoreLocation> {
        let from_env = std::env::var("EOS_SEC_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let (url, source) = match (from_env, &self.config.store.url) {
            (Some(u), _) => (u, "EOS_SEC_STORE_URL"),
            (None, Some(u)) => (u.clone(), "[store] url"),
            (None, None) => return Ok(eos_store::StoreLocation::Dir(self.state_dir.clone())),
        };
        let url = eos_store::StoreUrl::parse(&url).map_err(|e| bad_input!("{source}: {e}"))?;
        Ok(eos_store::StoreLocation::Postgres(url))
    }

    /// Open (creating if needed) the state store.
    pub fn store(&self) -> anyhow::Result<eos_store::Store> {
        let location = self.store_location()?;
        eos_store::Store::open_at(&location).map_err(|e| {
            let at = match &location {
                eos_store::StoreLocation::Dir(d) => d.display().to_string(),
                eos_store::StoreLocation::Postgres(u) => u.to_string(),
            };
            anyhow::Error::new(e).context(format!("opening the state store {at}"))
        })
    }
}

/// Logs go to stderr; `EOS_SEC_LOG` (env-filter syntax) sets the level.
/// By default a long-running command logs at `info`; a one-shot command
/// reports what matters in its own output, so only `error` is logged;
/// `-q`/`-v` move that default.
/// Colour only when stderr is a terminal (a redirected log stays plain text).
fn init_tracing(long_running: bool, verbosity: i8) {
    let default = if long_running {
        log::Level::Info
    } else {
        log::Level::Error
    };
    let filter = log::filter(default, verbosity);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::use_colour_on_stderr())
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let verbosity = log::verbosity(cli.verbose, cli.quiet);
    // Printing the command line itself needs no config or state.
    match cli.command {
        Command::Completions(a) => return cmd::cli::completions::<Cli>(&a),
        Command::Man(a) => return cmd::cli::man::<Cli>(&a),
        _ => {}
    }
    // `serve` sets up its own structured (JSON) logs.
    if !matches!(&cli.command, Command::Serve(_) | Command::Authz(_)) {
        init_tracing(
            matches!(&cli.command, Command::Sync(a) if a.watch)
                || matches!(&cli.command, Command::Cert(cmd::cert::CertCommand::Renew(a)) if a.daemon),
            verbosity,
        );
    }
    let (config, _path) = config::load(cli.config.as_deref())?;
    let state_dir = cli
        .state_dir
        .or_else(|| config.state.dir.clone())
        .unwrap_or_else(|| PathBuf::from(".eos-sec"));
    let ctx = Ctx {
        json: cli.json,
        config,
        state_dir,
        verbosity,
    };
    match cli.command {
        Command::Ipset(c) => cmd::ipset::run(c, &ctx),
        Command::Code(c) => cmd::code::run(c, &ctx),
        Command::Ca(c) => cmd::ca::run(c, &ctx),
        Command::Cert(c) => cmd::cert::run(c, &ctx),
        Command::Policy(c) => cmd::policy::run(c, &ctx),
        Command::Bootstrap(a) => cmd::bootstrap::run(a, &ctx),
        Command::Rules(c) => cmd::rules::run(c, &ctx),
        Command::Logs(c) => cmd::logs::run(c, &ctx),
        Command::Plan(a) => cmd::plan::run_plan(a, &ctx),
        Command::Apply(a) => cmd::plan::run_apply(a, &ctx),
        Command::Enforce(a) => cmd::enforce::run_enforce(a, &ctx),
        Command::Rollback(a) => cmd::enforce::run_rollback(a, &ctx),
        Command::Sync(a) => cmd::sync::run(a, &ctx),
        Command::Store(c) => cmd::store::run(c, &ctx),
        Command::Gate(c) => cmd::gate::run(c, &ctx),
        Command::Serve(a) => cmd::serve::run(a, &ctx),
        Command::Authz(c) => cmd::authz::run(c, &ctx),
        Command::Completions(_) | Command::Man(_) => Ok(()),
        Command::Drill(c) => cmd::drill::run(c, &ctx),
    }
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on
            // stderr; usage errors are bad input: exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A refusal is a result: with --json, its document is on stdout
            // (one shape for every command), and the error on stderr.
            if json && let Some(refusals) = output::refusals(&err) {
                let _ = output::emit_json(&output::refusal_document(refusals, None));
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit::exit_code(&err))
        }
    }
}
