//! The command line as data: the whole `--help` tree as one golden
//! snapshot (a changed flag, default or text shows up in review), and the
//! completions, manual pages and `--version` generated from it.

use std::process::Command;

use super::bin;

fn stdout_of(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "eos-sec {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name starts at column 2; wrapped description lines are indented
        // further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path, depth first: `[]`, `["ca"]`, `["ca", "sign"]`, ...
fn command_tree() -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout_of(&args);
        for sub in subcommands(&help).into_iter().rev() {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        found.push((path, help));
    }
    found
}

#[test]
fn help_tree() {
    let tree = command_tree();
    assert!(tree.len() > 20, "only {} commands found", tree.len());
    let mut all = String::new();
    for (path, help) in &tree {
        let name = std::iter::once("eos-sec")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        all.push_str(&format!("===== {name} --help\n{help}\n"));
    }
    insta::assert_snapshot!("help_tree", all);
}

#[test]
fn version_names_the_package_version() {
    let v = stdout_of(&["--version"]);
    let rest = v
        .strip_prefix(&format!("eos-sec {}", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("unexpected --version: {v:?}"));
    // Built from a git checkout (as here) the revision follows in brackets.
    let rev = rest.trim().trim_start_matches('(').trim_end_matches(')');
    assert!(
        rev.len() == 12 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
        "no git revision in {v:?}"
    );
}

#[test]
fn completions_cover_every_command() {
    let tree = command_tree();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for (path, _) in &tree {
            if let Some(last) = path.last() {
                assert!(script.contains(last.as_str()), "{shell}: no {last}");
            }
        }
    }
    // The bash script must at least parse.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eos-sec.bash");
    std::fs::write(&file, stdout_of(&["completions", "bash"])).unwrap();
    let ok = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(ok.success(), "bash -n refused the completion script");
}

#[test]
fn man_pages_for_every_command() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH eos-sec 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    stdout_of(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    for (path, _) in command_tree() {
        let name = std::iter::once("eos-sec")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        let file = dir.path().join(format!("{name}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(".SH SYNOPSIS"), "{}", file.display());
    }
}

/// Without `--config`/`EOS_SEC_CONFIG` the config is `./eos-sec.toml`, else
/// `$XDG_CONFIG_HOME/eos-sec/eos-sec.toml`, else `/etc/eos-sec/...`; a
/// relative path inside it is relative to the file, not to the working
/// directory.
#[test]
fn config_discovery_and_paths_relative_to_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("work");
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(xdg.join("eos-sec")).unwrap();
    std::fs::write(
        xdg.join("eos-sec/eos-sec.toml"),
        "[state]\ndir = \"state\"\n",
    )
    .unwrap();
    let add = |space: &str| {
        let out = bin()
            .current_dir(&cwd)
            .env("XDG_CONFIG_HOME", &xdg)
            .env("HOME", tmp.path())
            .args(["rules", "add", "--space", space, "--cidr", "198.51.100.7"])
            .args(["--label", "desk", "--declared-by", "alice"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The XDG file is found, and its `dir = "state"` is beside it.
    add("acme");
    assert!(xdg.join("eos-sec/state/state.db").exists());
    assert!(!cwd.join("state").exists());
    // ./eos-sec.toml comes first.
    std::fs::write(cwd.join("eos-sec.toml"), "[state]\ndir = \"here\"\n").unwrap();
    add("beta");
    assert!(cwd.join("here/state.db").exists());
    // A file that is found is read as strictly as a named one: its error
    // names it.
    std::fs::remove_file(cwd.join("eos-sec.toml")).unwrap();
    std::fs::write(xdg.join("eos-sec/eos-sec.toml"), "[state]\ndri = 1\n").unwrap();
    let out = bin()
        .current_dir(&cwd)
        .env("XDG_CONFIG_HOME", &xdg)
        .args(["rules", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let file = xdg.join("eos-sec/eos-sec.toml");
    assert!(
        err.contains(&format!("{}:2:1: unknown field `dri`", file.display())),
        "{err}"
    );
}
