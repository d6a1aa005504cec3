//! Architecture rules, checked from the manifests (see docs/ARCHITECTURE.md,
//! "Architecture invariants").

use std::path::Path;

use anyhow::{Context, Result, bail};

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
        if !manifest.contains("[lints]") || !manifest.contains("workspace = true") {
            problems.push(format!("crate {name} does not inherit [workspace.lints]"));
        }
    }
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
