//! The config file (TOML). One file serves the CLI and `eos-sec serve`; each
//! library section deserialises into that library's own options type.
//!
//! Looked up from `--config FILE`, then `EOS_SEC_CONFIG`, then
//! `./eos-sec.toml` if it exists; without one, every section has its
//! documented defaults. Unknown keys are refused so a typo cannot silently
//! leave a guard at its default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::bad_input;

/// The whole config file. Sections are added by the issues that need them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[state]`
    #[serde(default)]
    pub state: StateSection,
}

/// `[state]`: where state lives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// State directory; `--state-dir` overrides.
    pub dir: Option<PathBuf>,
}

/// The default config file name, read from the working directory if present.
pub const DEFAULT_FILE: &str = "eos-sec.toml";

/// Load the config: `explicit` (from `--config` or `EOS_SEC_CONFIG`) must
/// exist; otherwise `./eos-sec.toml` is read if present.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(DEFAULT_FILE);
            if !p.exists() {
                return Ok((Config::default(), None));
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad_input!("config {}: cannot read: {e}", path.display()))?;
    let config = parse(&text, &path)?;
    Ok((config, Some(path)))
}

/// Parse config text; errors carry `file:line:column`.
pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        bad_input!("{}:{line}:{col}: {}", path.display(), e.message())
    })
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_refused_with_location() {
        let err = parse("[state]\ndri = \"x\"\n", Path::new("eos-sec.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("eos-sec.toml:2:1: unknown field `dri`"),
            "{msg}"
        );
    }

    #[test]
    fn empty_is_default() {
        let c = parse("", Path::new("x")).unwrap();
        assert!(c.state.dir.is_none());
    }
}
