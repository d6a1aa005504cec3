//! Architecture rules, checked from the manifests (see docs/ARCHITECTURE.md,
//! "Architecture invariants").

use std::path::Path;

use anyhow::{Context, Result, bail};

mod codes;

/// Crates that must stay importable by any Rust service: no I/O frameworks.
const DOMAIN_CRATES: &[&str] = &[
    "eos-identity",
    "eos-ipset",
    "eos-logs",
    "eos-plan",
    "eos-ca",
    "eos-codes",
    "eos-policy",
];

/// Dependencies a domain crate must never have.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "tokio",
    "rusqlite",
    "clap",
    "anyhow",
    "aws-config",
    "aws-sdk-wafv2",
    "aws-sdk-acmpca",
    "aws-sdk-cloudwatchlogs",
    "axum",
    "hyper",
    "eos-store",
    "eos-aws",
    "eos-register",
    "eos-sec",
];

/// Only this crate may use the AWS SDK.
const AWS_CRATE: &str = "eos-aws";

/// The CLI crate: glue over the libraries.
const CLI_CRATE: &str = "eos-sec";

/// Database drivers the CLI must neither depend on nor reach through
/// `eos_store`'s re-exports: SQL lives in `eos-store`, operations in
/// `eos-ops`. (The CLI still depends on `eos-store` itself, for the
/// commands not yet moved into operations: ca, code, rules, sync, gate.)
const NOT_IN_CLI: &[&str] = &["rusqlite", "postgres"];

pub fn run(root: &Path) -> Result<()> {
    let arch = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .context("reading docs/ARCHITECTURE.md")?;
    let mut problems = Vec::new();
    let crates_dir = root.join("crates");
    let mut entries: Vec<_> = std::fs::read_dir(&crates_dir)
        .with_context(|| format!("reading {}", crates_dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let manifest_path = entry.path().join("Cargo.toml");
        let Ok(manifest) = std::fs::read_to_string(&manifest_path) else {
            continue;
        };
        if !arch.contains(&format!("`{name}`")) {
            problems.push(format!(
                "crate {name} is not described in docs/ARCHITECTURE.md"
            ));
        }
        let deps = dependency_names(&manifest);
        if DOMAIN_CRATES.contains(&name.as_str()) {
            for d in &deps {
                if FORBIDDEN_IN_DOMAIN.contains(&d.as_str()) {
                    problems.push(format!("domain crate {name} must not depend on {d}"));
                }
            }
        }
        if name != AWS_CRATE {
            for d in &deps {
                if d.starts_with("aws-") {
                    problems.push(format!(
                        "only {AWS_CRATE} may depend on the AWS SDK; {name} depends on {d}"
                    ));
                }
            }
        }
        if name == CLI_CRATE {
            problems.extend(database_in_cli(&entry.path(), &deps)?);
        }
        if !manifest.contains("[lints]") || !manifest.contains("workspace = true") {
            problems.push(format!("crate {name} does not inherit [workspace.lints]"));
        }
    }
    problems.extend(unclassified_errors(root)?);
    problems.extend(codes::check(root)?);
    if !problems.is_empty() {
        bail!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    eprintln!("tidy: ok");
    Ok(())
}

/// The CLI names no database driver: not in its `[dependencies]`, not in
/// its sources (`eos_store::rusqlite::...` would reach SQLite through the
/// store's re-export).
fn database_in_cli(dir: &Path, deps: &[String]) -> Result<Vec<String>> {
    let mut problems: Vec<String> = deps
        .iter()
        .filter(|d| NOT_IN_CLI.contains(&d.as_str()))
        .map(|d| {
            format!("the CLI crate {CLI_CRATE} must not depend on {d} (SQL lives in eos-store)")
        })
        .collect();
    let mut files = Vec::new();
    rust_files(&dir.join("src"), &mut files)?;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            if let Some(d) = NOT_IN_CLI.iter().find(|d| line.contains(&format!("{d}::"))) {
                problems.push(format!(
                    "{}:{}: the CLI uses {d} directly (SQL lives in eos-store, operations in eos-ops)",
                    file.display(),
                    i + 1
                ));
            }
        }
    }
    Ok(problems)
}

/// Names under `[dependencies]` (not dev- or build-dependencies).
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if !in_deps || t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = t.split_once('=') {
            let name = name.trim().trim_end_matches(".workspace").trim();
            out.push(name.to_owned());
        }
    }
    out
}

/// The file that maps error types to exit codes.
const EXIT_RS: &str = "crates/eos-sec/src/exit.rs";

/// Every error type a library crate defines (`#[derive(..Error..)]` on a
/// `pub struct`/`pub enum`) must be named in `EXIT_RS` — as bad input (exit
/// 2) or in its `OPERATIONAL` list (exit 1) — so a new error cannot exit 1
/// only because nobody thought about it. A name there that no crate defines
/// any more is reported too.
fn unclassified_errors(root: &Path) -> Result<Vec<String>> {
    let exit = std::fs::read_to_string(root.join(EXIT_RS))
        .with_context(|| format!("reading {EXIT_RS}"))?;
    let named = named_types(&exit);
    let mut defined = Vec::new();
    let crates_dir = root.join("crates");
    for entry in std::fs::read_dir(&crates_dir)
        .with_context(|| format!("reading {}", crates_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "eos-sec" {
            continue;
        }
        let ident = name.replace('-', "_");
        let mut files = Vec::new();
        rust_files(&entry.path().join("src"), &mut files)?;
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            for ty in error_types(&text) {
                defined.push((ident.clone(), ty, file.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    for (ident, ty, file) in &defined {
        if !named.iter().any(|(c, t)| c == ident && t == ty) {
            problems.push(format!(
                "{ident}::{ty} ({}) is an error type that {EXIT_RS} does not classify: \
                 add it to the bad-input checks (exit 2) or to OPERATIONAL (exit 1)",
                file.strip_prefix(root).unwrap_or(file).display()
            ));
        }
    }
    for (c, t) in &named {
        if !defined.iter().any(|(ident, ty, _)| ident == c && ty == t) {
            problems.push(format!(
                "{EXIT_RS} names {c}::{t}, which is no error type of that crate"
            ));
        }
    }
    Ok(problems)
}

/// `(crate ident, last path segment)` of every `eos_x::...::Name` in `text`.
fn named_types(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("eos_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let path = &tail[..end];
        // `eos_x::module::Type::Variant`: the type is the first segment in
        // upper camel case.
        let mut segments = path.split("::").filter(|s| !s.is_empty());
        if let Some(krate) = segments.next()
            && let Some(ty) = segments.find(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
        {
            out.push((krate.to_owned(), ty.to_owned()));
        }
        rest = &tail[end.max(1)..];
    }
    out.sort();
    out.dedup();
    out
}

/// Names of the `pub` types in `text` that derive `Error`.
fn error_types(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !(t.starts_with("#[derive(") && t.contains("Error")) {
            continue;
        }
        // The item follows the derive after further attributes and docs.
        let item = lines
            .iter()
            .skip(i + 1)
            .map(|l| l.trim_start())
            .find(|l| !(l.starts_with('#') || l.starts_with("//")));
        let Some(item) = item else { continue };
        for kw in ["pub struct ", "pub enum "] {
            if let Some(rest) = item.strip_prefix(kw) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_may_not_reach_a_database_driver() {
        let dir = tempfile_dir("eos-tidy-cli");
        std::fs::create_dir_all(dir.join("src/cmd")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dir.join("src/cmd/x.rs"),
            "fn f(tx: &eos_store::rusqlite::Transaction<'_>) {}\n",
        )
        .unwrap();
        let problems = database_in_cli(&dir, &["postgres".to_owned(), "clap".to_owned()]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("must not depend on postgres"));
        assert!(problems[1].contains("x.rs:1: the CLI uses rusqlite"));
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{name}-{}", std::process::id()))
    }

    #[test]
    fn finds_error_types_behind_attributes_and_docs() {
        let src = "#[derive(Debug, thiserror::Error)]\n#[non_exhaustive]\n/// doc\npub enum FooError<E> {}\n\
                   #[derive(Debug, Clone)]\npub struct NotAnError;\n\
                   #[derive(Debug, Error)]\npub struct Bar;\n";
        assert_eq!(error_types(src), ["FooError", "Bar"]);
    }

    #[test]
    fn names_are_the_type_not_the_variant_or_method() {
        let src = r#"e.is::<eos_plan::Refused>() || matches!(x, Some(eos_ipset::ReadError::Line(_)))
            || e.downcast_ref::<eos_policy::gate::GateError>().is_some_and(eos_policy::gate::GateError::is_bad_input)
            "eos_store::codes::SpendError","#;
        assert_eq!(
            named_types(src),
            [
                ("eos_ipset".to_owned(), "ReadError".to_owned()),
                ("eos_plan".to_owned(), "Refused".to_owned()),
                ("eos_policy".to_owned(), "GateError".to_owned()),
                ("eos_store".to_owned(), "SpendError".to_owned()),
            ]
        );
    }
}
