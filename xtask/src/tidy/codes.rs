//! One registry of stable codes per crate (cargo-deny's diagnostic codes
//! are the model): each registry is an enum whose `as_str` names every code
//! and whose `ALL` lists every variant; each code is documented in
//! docs/CODES.md and produced by at least one test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `(crate, enum)`: the registries. A crate whose `src/codes.rs` defines a
/// `Code` enum must have it here.
pub const REGISTRIES: &[(&str, &str)] = &[
    ("eos-ca", "Code"),
    ("eos-codes", "Code"),
    ("eos-codes", "RefusalReason"),
    ("eos-plan", "FindingCode"),
    ("eos-policy", "GuardCode"),
    ("eos-register", "Code"),
];

const CODES_MD: &str = "docs/CODES.md";

/// Problems with the registries, their documentation and their tests.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let doc = std::fs::read_to_string(root.join(CODES_MD))
        .with_context(|| format!("reading {CODES_MD}"))?;
    let tests = test_text(root)?;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let registry_file = std::fs::read_to_string(entry.path().join("src/codes.rs"))
            .is_ok_and(|t| t.contains("\npub enum Code {"));
        if registry_file && !REGISTRIES.contains(&(name.as_str(), "Code")) {
            problems.push(format!(
                "{name} has src/codes.rs but its Code is not a registry xtask/src/tidy/codes.rs checks"
            ));
        }
    }
    for &(krate, ty) in REGISTRIES {
        let mut files = Vec::new();
        super::rust_files(&root.join("crates").join(krate).join("src"), &mut files)?;
        let texts: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        let Some(block) = texts.iter().find_map(|text| impl_block(text, ty)) else {
            problems.push(format!("{krate}: no `impl {ty} {{` found (a registry)"));
            continue;
        };
        let registry = Registry::parse(&block, ty);
        let what = format!("{krate}::{ty}");
        if registry.all.is_empty() {
            problems.push(format!("{what} has no `pub const ALL` listing every code"));
        }
        let named: BTreeSet<&String> = registry.codes.iter().map(|(v, _)| v).collect();
        let listed: BTreeSet<&String> = registry.all.iter().collect();
        for v in named.difference(&listed) {
            problems.push(format!("{what}::{v} is missing from {ty}::ALL"));
        }
        let mut seen = BTreeSet::new();
        for (variant, code) in &registry.codes {
            if !seen.insert(code) {
                problems.push(format!("{what}: code `{code}` is named twice"));
            }
            if !code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                problems.push(format!("{what}: code `{code}` is not kebab-case"));
            }
            if !doc.contains(&format!("`{code}`")) {
                problems.push(format!(
                    "{what}: code `{code}` is not documented in {CODES_MD}"
                ));
            }
            if UNPRODUCIBLE.iter().any(|(c, _)| c == code) {
                continue;
            }
            let mut named = vec![
                format!("\"{code}\""),
                format!("[{code}]"),
                format!("{ty}::{variant}"),
            ];
            // `pub const NAME: Ty = Ty::Variant;` (eos-policy's `guard::NAME`).
            named.extend(
                texts
                    .iter()
                    .flat_map(|t| aliases(t, ty, variant))
                    .map(|a| format!("::{a}")),
            );
            if !named.iter().any(|n| tests.contains(n.as_str())) {
                problems.push(format!(
                    "{what}: code `{code}` is produced by no test (no test names \"{code}\" or {ty}::{variant})"
                ));
            }
        }
    }
    Ok(problems)
}

/// Codes no test can produce, and why (also listed in docs/CODES.md). Each
/// is still documented.
const UNPRODUCIBLE: &[(&str, &str)] = &[
    (
        "encoding",
        "eos-ca's encoder failing on values eos-ca built itself: no input reaches it",
    ),
    (
        "signer-failed",
        "a signer's own failure (the random source, AWS Private CA failing mid-issue): \
         moto cannot be made to fail an IssueCertificate it accepted",
    ),
    (
        "zero-prefix",
        "defence in depth: rule parsing refuses every /0 and an observation is one \
         address, so no desired set holds one",
    ),
];

/// The names of `pub const NAME: <ty> = <ty>::<variant>;` in `text`.
fn aliases<'a>(text: &'a str, ty: &'a str, variant: &'a str) -> impl Iterator<Item = String> + 'a {
    let tail = format!(": {ty} = {ty}::{variant};");
    text.lines().filter_map(move |l| {
        l.trim()
            .strip_prefix("pub const ")
            .and_then(|rest| rest.strip_suffix(tail.as_str()))
            .map(str::to_owned)
    })
}

/// A registry: `(variant, code)` from `as_str`, and the variants of `ALL`.
#[derive(Debug, Default)]
struct Registry {
    codes: Vec<(String, String)>,
    all: Vec<String>,
}

impl Registry {
    fn parse(block: &str, ty: &str) -> Registry {
        let mut r = Registry::default();
        let prefix = format!("{ty}::");
        if let Some(at) = block.find("pub const ALL") {
            let list = &block[at..];
            let list = &list[..list.find("];").unwrap_or(list.len())];
            r.all = variants(list, &prefix).collect();
        }
        if let Some(at) = block.find("fn as_str(") {
            let body = &block[at..];
            for line in body.lines() {
                let line = line.trim();
                if let Some((lhs, rhs)) = line.split_once(" => ")
                    && let Some(variant) = lhs.strip_prefix(&prefix)
                    && let Some(code) = rhs.trim_end_matches(',').strip_prefix('"')
                    && let Some(code) = code.strip_suffix('"')
                {
                    let variant: String = variant
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    r.codes.push((variant, code.to_owned()));
                }
            }
        }
        r
    }
}

fn variants<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
    text.match_indices(prefix).map(move |(at, _)| {
        text[at + prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    })
}

/// The text of `impl <ty> {` up to its closing brace at column 0.
fn impl_block(text: &str, ty: &str) -> Option<String> {
    let start = text.find(&format!("\nimpl {ty} {{\n"))?;
    let rest = &text[start + 1..];
    let end = rest.find("\n}\n").map_or(rest.len(), |e| e + 3);
    Some(rest[..end].to_owned())
}

/// Everything the tests say: files under `crates/*/tests`, and what
/// follows `#[cfg(test)]` in source files.
fn test_text(root: &Path) -> Result<String> {
    let mut out = String::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        let mut files: Vec<PathBuf> = Vec::new();
        super::rust_files(&dir.join("tests"), &mut files)?;
        for f in &files {
            out.push_str(&std::fs::read_to_string(f)?);
        }
        let mut src = Vec::new();
        super::rust_files(&dir.join("src"), &mut src)?;
        for f in &src {
            let text = std::fs::read_to_string(f)?;
            if let Some(at) = text.find("#[cfg(test)]") {
                out.push_str(&text[at..]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_registry_and_finds_a_variant_missing_from_all() {
        let text = "\nimpl Code {\n    pub const ALL: &[Code] = &[Code::A];\n    pub const fn as_str(self) -> &'static str {\n        match self {\n            Code::A => \"a-code\",\n            Code::B => \"b-code\",\n        }\n    }\n}\n";
        let r = Registry::parse(&impl_block(text, "Code").unwrap(), "Code");
        assert_eq!(
            r.codes,
            [
                ("A".to_owned(), "a-code".to_owned()),
                ("B".to_owned(), "b-code".to_owned())
            ]
        );
        assert_eq!(r.all, ["A"]);
    }
}
