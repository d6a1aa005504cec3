//! `cargo xtask bench-peers`: eos-sec and peer tools on the same inputs.
use std::path::Path;

use anyhow::Result;

pub fn run(_root: &Path, _args: &[String]) -> Result<()> {
    anyhow::bail!("bench-peers: not yet implemented")
}
