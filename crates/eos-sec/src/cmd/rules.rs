//! `eos-sec rules ...`: declared Network Access Rules in the state store.

use super::actor;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use eos_identity::{SpaceId, UserId};
use eos_plan::rules::{Timestamp, rfc3339};
use eos_plan::{Label, NetworkAccessRule, RuleCidr, RuleFormat, parse_rules};
use eos_store::rules::{
    ImportCounts, RuleChange, StoredRule, import_rules, list_rules, put_rule, remove_rules,
};
use serde::Serialize;

use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// Manage declared Network Access Rules.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Declare one rule (or update the rule of the same space and CIDR)
    Add(AddArgs),
    /// List rules
    List(ListArgs),
    /// Remove rules of a space by CIDR (all or none)
    Remove(RemoveArgs),
    /// Import rules from a TOML, JSON or CSV file (all or none; see docs/RULES.md)
    Import(ImportArgs),
}

/// Arguments of `rules add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Space the rule opens
    #[arg(long)]
    pub space: SpaceId,
    /// Network admitted: an address or a CIDR without host bits; /0 is refused
    #[arg(long)]
    pub cidr: String,
    /// What it is for ("HQ office")
    #[arg(long)]
    pub label: String,
    /// The administrator declaring it
    #[arg(long)]
    pub declared_by: UserId,
    /// Expiry, RFC 3339 (2026-12-31T00:00:00Z) [default: never]
    #[arg(long)]
    pub expires: Option<String>,
}

/// Arguments of `rules list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these spaces [default: all]
    #[arg(long)]
    pub space: Vec<SpaceId>,
}

/// Arguments of `rules remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Space of the rules
    #[arg(long)]
    pub space: SpaceId,
    /// CIDRs of the rules to remove
    #[arg(required = true)]
    pub cidrs: Vec<String>,
}

/// File formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// `[[rule]]` tables
    Toml,
    /// An array of rule objects, or {"rules": [...]}
    Json,
    /// Header `space,cidr,label,declared_by,created,expires`
    Csv,
}

/// Arguments of `rules import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The rules file
    pub file: PathBuf,
    /// Its format [default: from the extension]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
}

pub fn run(cmd: RulesCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Add(a) => add(a, ctx),
        RulesCommand::List(a) => list(a, ctx),
        RulesCommand::Remove(a) => remove(a, ctx),
        RulesCommand::Import(a) => import(a, ctx),
    }
}

fn cidr(s: &str) -> anyhow::Result<RuleCidr> {
    RuleCidr::parse(s).map_err(|e| bad_input!("{e}"))
}

fn add(a: AddArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let expires = match &a.expires {
        Some(t) => Some(
            Timestamp::parse(t)
                .map_err(|e| bad_input!("--expires: {e}"))?
                .0,
        ),
        None => None,
    };
    let label = Label::new(&a.label).map_err(|e| bad_input!("--label: {e}"))?;
    let rule = NetworkAccessRule::new(
        a.space,
        cidr(&a.cidr)?,
        label,
        a.declared_by,
        time::OffsetDateTime::now_utc(),
        expires,
    )
    .map_err(|e| bad_input!("{e}"))?;
    let mut store = ctx.store()?;
    let tx = store.transaction()?;
    let change = put_rule(&tx, &rule, &actor())?;
    tx.commit()?;
    if ctx.json {
        return emit_json(&serde_json::json!({ "change": change, "rule": rule }));
    }
    let verb = match change {
        RuleChange::Added => "added",
        RuleChange::Updated => "updated",
        RuleChange::Unchanged => "unchanged",
    };
    emit(&format!(
        "{verb}: {} {} ({})\n",
        rule.space, rule.cidr, rule.label
    ))
}

fn list(a: ListArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rules = list_rules(store.conn(), &a.space)?;
    if ctx.json {
        return emit_json(&rules);
    }
    emit(&render_rules(&rules, time::OffsetDateTime::now_utc()))
}

/// The rules as a table.
pub fn render_rules(rules: &[StoredRule], now: time::OffsetDateTime) -> String {
    if rules.is_empty() {
        return "no rules\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<28} {:<24} {:<20} {:<20} LABEL",
        "SPACE", "CIDR", "DECLARED BY", "CREATED", "EXPIRES"
    );
    for r in rules {
        let r = &r.rule;
        let expires = match r.expires {
            Some(e) if r.is_expired(now) => format!("{} (expired)", rfc3339(e)),
            Some(e) => rfc3339(e),
            None => "never".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:<24} {:<20} {:<20} {}",
            r.space.as_str(),
            r.cidr.to_string(),
            r.declared_by.as_str(),
            rfc3339(r.created),
            expires,
            r.label
        );
    }
    out
}

fn remove(a: RemoveArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let cidrs = a
        .cidrs
        .iter()
        .map(|c| cidr(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut store = ctx.store()?;
    let removed = remove_rules(&mut store, &a.space, &cidrs, &actor()).map_err(|e| match e {
        eos_store::StoreError::NotFound { key, .. } => {
            bad_input!("no rule {key}; nothing was removed (see `eos-sec rules list`)")
        }
        other => anyhow::Error::new(other),
    })?;
    if ctx.json {
        return emit_json(&serde_json::json!({ "removed": removed }));
    }
    let mut out = String::new();
    for r in &removed {
        let _ = writeln!(out, "removed: {} {} ({})", r.space, r.cidr, r.label);
    }
    emit(&out)
}

/// Read and parse a rules file (format from `format` or the extension).
pub fn read_rules_file(
    path: &Path,
    format: Option<FormatArg>,
) -> anyhow::Result<Vec<NetworkAccessRule>> {
    let name = path.display().to_string();
    let format = match format {
        Some(FormatArg::Toml) => RuleFormat::Toml,
        Some(FormatArg::Json) => RuleFormat::Json,
        Some(FormatArg::Csv) => RuleFormat::Csv,
        None => RuleFormat::from_path(&name).ok_or_else(|| {
            bad_input!("{name}: cannot tell the format from the extension; use .toml, .json or .csv, or --format")
        })?,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad_input!("{name}: cannot read: {e}"))?;
    Ok(parse_rules(
        &text,
        format,
        &name,
        time::OffsetDateTime::now_utc(),
    )?)
}

#[derive(Serialize)]
struct ImportReport<'a> {
    file: String,
    rules: usize,
    #[serde(flatten)]
    counts: &'a ImportCounts,
}

fn import(a: ImportArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let rules = read_rules_file(&a.file, a.format)?;
    let mut store = ctx.store()?;
    let counts = import_rules(&mut store, &rules, &actor())?;
    if ctx.json {
        return emit_json(&ImportReport {
            file: a.file.display().to_string(),
            rules: rules.len(),
            counts: &counts,
        });
    }
    emit(&format!(
        "imported {} rules from {}: {} added, {} updated, {} unchanged\n",
        rules.len(),
        a.file.display(),
        counts.added,
        counts.updated,
        counts.unchanged
    ))
}
