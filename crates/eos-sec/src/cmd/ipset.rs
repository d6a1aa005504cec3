//! `eos-sec ipset ...`: the exact IP set engine from the command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_ipset::{IpSetBuilder, ReadStats, canonical, read_list};
use serde::Serialize;

use crate::output::{emit, emit_json};

/// Work with exact IP sets.
#[derive(Debug, Subcommand)]
pub enum IpsetCommand {
    /// Print the minimal exact CIDR list covering the addresses and CIDRs read
    /// (one per line; `#` comments and blank lines skipped). IPv4 first, then
    /// IPv6. Nothing is widened: the output covers exactly the input.
    Aggregate(AggregateArgs),
}

/// Arguments of `ipset aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// Files to read, one address or CIDR per line [default: standard input]
    pub files: Vec<PathBuf>,
}

#[derive(Serialize)]
struct AggregateReport<'a> {
    cidrs: Vec<String>,
    v4_cidrs: usize,
    v6_cidrs: usize,
    v4_addresses: u64,
    /// A decimal string: IPv6 counts exceed JSON's safe integer range.
    v6_addresses: String,
    input: &'a ReadStats,
}

pub fn run(cmd: IpsetCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        IpsetCommand::Aggregate(args) => aggregate(args, ctx.json),
    }
}

fn aggregate(args: AggregateArgs, json: bool) -> anyhow::Result<()> {
    let mut builder = IpSetBuilder::new();
    let mut stats = ReadStats::default();
    if args.files.is_empty() {
        read_list(std::io::stdin().lock(), "<stdin>", &mut builder, &mut stats)?;
    }
    for path in &args.files {
        let name = path.display().to_string();
        let file = std::fs::File::open(path)
            .map_err(|e| crate::exit::bad_input!("{name}: cannot open: {e}"))?;
        read_list(file, &name, &mut builder, &mut stats)
            .with_context(|| format!("reading {name}"))?;
    }
    let set = builder.build();
    let v4 = set.v4_cidrs();
    let v6 = set.v6_cidrs();
    if json {
        let cidrs = set.to_cidrs().iter().map(canonical).collect();
        return emit_json(&AggregateReport {
            cidrs,
            v4_cidrs: v4.len(),
            v6_cidrs: v6.len(),
            v4_addresses: set.v4_len(),
            v6_addresses: set.v6_len().to_string(),
            input: &stats,
        });
    }
    // Host bits and mapped addresses were normalised: say so on stderr, where
    // it does not disturb a pipeline.
    for n in &stats.notices {
        eprintln_notice(&format!(
            "note: {}:{}: {} -> {} ({})",
            n.source_name, n.line, n.token, n.normalised, n.reason
        ));
    }
    let mut out = String::with_capacity((v4.len() + v6.len()) * 20);
    for n in &v4 {
        use std::fmt::Write;
        let _ = writeln!(out, "{}/{}", n.network(), n.prefix_len());
    }
    for n in &v6 {
        use std::fmt::Write;
        let _ = writeln!(out, "{}/{}", n.network(), n.prefix_len());
    }
    emit(&out)
}

#[allow(clippy::print_stderr)]
fn eprintln_notice(s: &str) {
    eprintln!("{s}");
}
