//! `eos-sec completions` and `eos-sec man`: the command line as data. Both
//! are generated from the clap definition the binary parses with, so they
//! cannot drift from it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::output::emit_parts;

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write eos-sec.1 and one page per subcommand (eos-sec-ca-sign.1, ...)
    /// into this directory instead of printing eos-sec.1 on stdout
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Print the completion script for `a.shell`.
pub fn completions<C: CommandFactory>(a: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = C::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "eos-sec", &mut out);
    emit_parts(&[out])
}

/// Print the manual page, or write every page into `a.out_dir`.
pub fn man<C: CommandFactory>(a: &ManArgs) -> anyhow::Result<()> {
    let cmd = C::command();
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        return clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing manual pages to {}", dir.display()));
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .context("rendering the manual page")?;
    emit_parts(&[out])
}
