//! `eos-sec store migrate`: move the SQLite state directory onto PostgreSQL.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use eos_store::transfer::{CopyReport, copy_to_postgres};
use eos_store::{Store, StoreError, StoreUrl};

use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// `eos-sec store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the SQLite state directory into an empty PostgreSQL database,
    /// verifying every table's row count and the audit log; a non-empty
    /// target is refused with nothing written
    Migrate(MigrateArgs),
}

/// `eos-sec store migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The target database, `postgres://user:password@host:port/database`
    /// (the password is never printed)
    #[arg(long, value_name = "URL")]
    pub to: String,
}

pub fn run(cmd: StoreCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Migrate(a) => migrate(a, ctx),
    }
}

fn migrate(args: MigrateArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let target = StoreUrl::parse(&args.to).map_err(|e| bad_input!("--to: {e}"))?;
    if matches!(ctx.store_location()?, eos_store::StoreLocation::Postgres(_)) {
        return Err(bad_input!(
            "store migrate reads the SQLite state directory; unset EOS_SEC_STORE_URL and [store] url"
        ));
    }
    let db = ctx.state_dir.join(eos_store::DB_FILE);
    if !db.is_file() {
        return Err(bad_input!("no state database at {}", db.display()));
    }
    let source = ctx.store()?;
    let report = match copy_to_postgres(&source, &target) {
        Ok(r) => r,
        Err(e @ StoreError::TargetNotEmpty { .. }) => return Err(bad_input!("{e}")),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("copying into {target}"))),
    };
    if ctx.json {
        return emit_json(&report);
    }
    emit(&render(&source, &report))
}

fn render(source: &Store, r: &CopyReport) -> String {
    let mut out = format!(
        "Copied {} into {} (schema version {}).\n",
        source.location(),
        r.target,
        r.schema_version
    );
    let width = r.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
    for t in &r.tables {
        let _ = writeln!(out, "  {:width$}  {:>8} rows", t.table, t.target);
    }
    let _ = writeln!(
        out,
        "Verified: every table's row count, and the audit log ({} entries, sha256 {}).",
        r.audit_entries, r.audit_digest
    );
    out
}
