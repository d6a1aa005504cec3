//! `eos-sec --version` names the git revision it was built from, when there
//! is one: a build from a source tarball (no `.git`, or no `git`) still
//! works and reports the bare version. `EOS_SEC_GIT_REV` overrides the
//! lookup (for packagers who know the revision but ship no `.git`).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo::rerun-if-env-changed=EOS_SEC_GIT_REV");
    let rev = std::env::var("EOS_SEC_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself (a checkout), the branch
            // it names (a commit) and packed-refs (a gc). Paths come from
            // git, so a linked worktree (`.git` is a file) works too.
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    rerun_if_changed(&p);
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                rerun_if_changed(&p);
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let full = match rev {
        Some(rev) => format!("{version} ({rev})"),
        None => version,
    };
    println!("cargo::rustc-env=EOS_SEC_VERSION={full}");
}

fn rerun_if_changed(git_path: &str) {
    let mut path = PathBuf::from(git_path);
    if path.is_relative()
        && let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR")
    {
        path = PathBuf::from(dir).join(path);
    }
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}
