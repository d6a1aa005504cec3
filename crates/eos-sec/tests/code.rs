#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `eos-sec code ...` run as a process: what an operator sees.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PEPPER: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";

struct Env {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    /// A state dir, and a config naming a 0600 pepper file.
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        write_pepper(&env.path("pepper"), PEPPER, 0o600);
        env.config(&format!(
            "[codes]\npepper_file = \"{}\"\n",
            env.path("pepper").display()
        ));
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, text: &str) {
        std::fs::write(self.path("eos-sec.toml"), text).unwrap();
    }

    fn run_with(&self, args: &[&str], stdin: &str, pepper_env: Option<&str>) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("EOS_SEC_STATE_DIR", self.path("state"))
            .env("USER", "tester")
            .env_remove("EOS_SEC_CONFIG")
            .env_remove("EOS_SEC_PEPPER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = pepper_env {
            cmd.env("EOS_SEC_PEPPER", p);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, "", None)
    }

    /// `code issue --space acme --user alice` and `extra`.
    fn run_issue(&self, extra: &[&str]) -> Out {
        let mut args = vec!["code", "issue", "--space", "acme", "--user", "alice"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn issue(&self, extra: &[&str]) -> String {
        let out = self.run_issue(extra);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim_end().to_owned()
    }
}

fn write_pepper(path: &Path, hex: &str, mode: u32) {
    std::fs::write(path, format!("{hex}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
}

fn is_code(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 10
        && groups[0] == "EOS"
        && groups[1..].iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        })
}

/// Secrets and run-specific values replaced, so snapshots are stable and
/// can never hold a code.
macro_rules! snapshot {
    ($name:expr, $value:expr, $dir:expr) => {{
        let dir = regex_escape(&$dir.path().display().to_string());
        insta::with_settings!({filters => vec![
            (r"EOS(-[0-9A-Z]{4}){9}", "[CODE]"),
            (r"\b[0-9A-HJKMNP-TV-Z]{9}\b", "[CODE-ID]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
            (dir.as_str(), "[DIR]"),
        ]}, {
            insta::assert_snapshot!($name, $value);
        });
    }};
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[test]
fn issue_prints_the_code_once_on_its_own_line() {
    let env = Env::new();
    let out = env.run(&[
        "code",
        "issue",
        "--space",
        "acme",
        "--user",
        "alice",
        "--purpose",
        "register-ip,register-cert",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1);
    let code = out.stdout.trim_end();
    assert!(is_code(code), "{code}");
    assert!(!out.stderr.contains(code));
    snapshot!("issue_stderr", out.stderr, env.dir);

    env.issue(&["--purpose", "register-ip", "--ttl", "2h", "--max-uses", "3"]);
    let rec = env.run(&[
        "code",
        "issue",
        "--space",
        "acme",
        "--user",
        "root",
        "--role",
        "admin",
        "--recovery",
    ]);
    assert_eq!(rec.code, 0, "{}", rec.stderr);
    let list = env.run(&["code", "list"]);
    assert_eq!(list.code, 0);
    snapshot!("list", list.stdout, env.dir);
    let json = env.run(&["--json", "code", "list"]);
    assert_eq!(json.code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 3);
    snapshot!("list_json", json.stdout, env.dir);
    let bare = code.replace('-', "");
    for text in [&list.stdout, &json.stdout, &list.stderr, &json.stderr] {
        assert!(!text.contains(code) && !text.contains(&bare[12..]));
        assert!(!text.contains(PEPPER));
    }
}

#[test]
fn issue_json_carries_the_code_once() {
    let env = Env::new();
    let out = env.run(&[
        "--json",
        "code",
        "issue",
        "--space",
        "acme",
        "--user",
        "bob",
        "--role",
        "admin",
        "--purpose",
        "recover",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let code = v["code"].as_str().unwrap();
    assert!(is_code(code));
    assert_eq!(out.stdout.matches(code).count(), 1);
    assert_eq!(v["status"], "live");
    assert_eq!(v["purposes"], serde_json::json!(["recover"]));
}

#[test]
fn verify_reads_stdin_and_spends_only_when_asked() {
    let env = Env::new();
    let code = env.issue(&["--purpose", "register-ip"]);
    let verify = |extra: &[&str]| {
        let mut args = vec!["code", "verify", "--purpose", "register-ip"];
        args.extend_from_slice(extra);
        env.run_with(&args, &format!("{}\n", code.to_lowercase()), None)
    };
    let ok = verify(&[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    snapshot!("verify_accepted", ok.stdout, env.dir);
    let spent = verify(&["--spend"]);
    assert_eq!(spent.code, 0, "{}", spent.stderr);
    let again = verify(&[]);
    assert_eq!(again.code, 1);
    assert_eq!(again.stdout, "");
    snapshot!("verify_rejected", again.stderr, env.dir);
    let wrong_space = verify(&["--space", "other"]);
    assert_eq!(wrong_space.stderr, again.stderr);
    // With --json the rejection is the refusal document, as generic.
    let json = env.run_with(
        &["--json", "code", "verify", "--purpose", "register-ip"],
        &format!("{code}\n"),
        None,
    );
    assert_eq!((json.code, &json.stderr), (1, &again.stderr));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "refused", "refusals": [{
            "code": "code-rejected",
            "message": "security code not accepted (the reason is in the audit log: action code.reject)",
        }]})
    );
    for o in [&ok, &spent, &again, &wrong_space, &json] {
        assert!(!o.stdout.contains(&code) && !o.stderr.contains(&code));
    }
}

#[test]
fn verify_names_a_typo_and_does_not_count_it() {
    let env = Env::new();
    let code = env.issue(&["--purpose", "register-ip"]);
    let verify =
        |input: &str| env.run_with(&["code", "verify", "--purpose", "register-ip"], input, None);
    // Symbol 20 (after `EOS-`, counting symbols only) mistyped as `U`, a
    // symbol changed, two neighbours swapped, a symbol left out.
    let symbols: Vec<char> = code[4..].chars().filter(|&c| c != '-').collect();
    let with = |f: &dyn Fn(&mut Vec<char>)| {
        let mut v = symbols.clone();
        f(&mut v);
        v.into_iter().collect::<String>()
    };
    let not_a_symbol = with(&|v| v[19] = 'U');
    let changed = with(&|v| v[19] = if v[19] == '7' { '8' } else { '7' });
    let swapped = with(&|v| v.swap(10, 11));
    let short = with(&|v| {
        v.remove(3);
    });
    let out = verify(&not_a_symbol);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("character 20 is not"), "{}", out.stderr);
    let out = verify(&changed);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("mistyped or two are swapped"),
        "{}",
        out.stderr
    );
    if symbols[10] != symbols[11] {
        let out = verify(&swapped);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains("mistyped or two are swapped"),
            "{}",
            out.stderr
        );
    }
    let out = verify(&short);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("has 35 symbols"), "{}", out.stderr);
    snapshot!("verify_typo", verify(&changed).stderr, env.dir);
    for input in [&not_a_symbol, &changed, &swapped, &short] {
        let out = verify(input);
        assert_eq!(out.stdout, "");
        assert!(!out.stderr.contains(input.as_str()), "{}", out.stderr);
    }
    // None of it was an attempt: no backoff step (three free failures, so
    // ten counted ones would make this wait), nothing in the audit log.
    let ok = verify(&code);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let log = eos_store::Store::open(&env.path("state"))
        .unwrap()
        .audit_log(100)
        .unwrap();
    assert!(log.iter().all(|e| e.action != "code.reject"), "{log:?}");
}

#[test]
fn a_recover_code_for_a_non_administrator_is_not_issued() {
    let env = Env::new();
    for role in ["user", "service"] {
        let out = env.run_issue(&["--role", role, "--purpose", "register-ip,recover"]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stdout, "");
        assert!(out.stderr.contains("[recover-not-admin]"), "{}", out.stderr);
    }
    let json = env.run_issue(&["--purpose", "recover", "--json"]);
    assert_eq!(json.code, 2, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["status"], "refused", "{v}");
    assert_eq!(v["refusals"][0]["code"], "recover-not-admin", "{v}");
    snapshot!(
        "issue_recover_not_admin",
        env.run_issue(&["--purpose", "recover"]).stderr,
        env.dir
    );
    assert_eq!(
        env.run(&["code", "list", "--all"]).stdout,
        "no codes\n",
        "nothing was stored"
    );
    // An administrator's onboarding code may carry `recover`.
    env.issue(&["--role", "admin", "--purpose", "register-ip,recover"]);
}

#[test]
fn revoke_by_id() {
    let env = Env::new();
    let code = env.issue(&["--purpose", "register-cert"]);
    let id: String = code.replace('-', "")[3..12].to_owned();
    let out = env.run(&[
        "code",
        "revoke",
        &id.to_lowercase(),
        "--reason",
        "left the company",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("revoked {id}\n"));
    let again = env.run(&["code", "revoke", &id]);
    assert_eq!(again.stdout, format!("{id} was already revoked\n"));
    let unknown = env.run(&["code", "revoke", "000000000"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("no code with id 000000000"));
    let v = env.run_with(
        &["code", "verify", "--purpose", "register-cert"],
        &code,
        None,
    );
    assert_eq!(v.code, 1);
    let list = env.run(&["code", "list", "--all"]);
    assert!(list.stdout.contains("revoked"), "{}", list.stdout);
    assert_eq!(
        env.run(&["code", "list"]).stdout,
        "no codes (--all includes expired, spent and revoked codes)\n"
    );
}

#[test]
fn missing_pepper_refuses_with_exit_2() {
    let env = Env::new();
    env.config("");
    for args in [
        &[
            "code",
            "issue",
            "--space",
            "acme",
            "--user",
            "a",
            "--purpose",
            "register-ip",
        ][..],
        &["code", "verify", "--purpose", "recover"][..],
        &["code", "rotate-pepper", "--new-pepper-file", "p2"][..],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains("no pepper configured"),
            "{}",
            out.stderr
        );
    }
    snapshot!(
        "missing_pepper",
        env.run(&[
            "code",
            "issue",
            "--space",
            "acme",
            "--user",
            "a",
            "--purpose",
            "register-ip"
        ])
        .stderr,
        env.dir
    );
    assert!(!env.path("p2").exists());
}

#[test]
fn weak_ambiguous_or_readable_peppers_are_refused() {
    let env = Env::new();
    let issue = [
        "code",
        "issue",
        "--space",
        "acme",
        "--user",
        "a",
        "--purpose",
        "register-ip",
    ];
    // Too short, from the environment (the file config is removed).
    env.config("");
    let short = env.run_with(&issue, "", Some(&PEPPER[..62]));
    assert_eq!(short.code, 2);
    assert!(
        short.stderr.contains("31 bytes; at least 32"),
        "{}",
        short.stderr
    );
    let not_hex = env.run_with(&issue, "", Some("not-a-pepper"));
    assert_eq!(not_hex.code, 2);
    assert!(!not_hex.stderr.contains("not-a-pepper"));
    // Environment and file together: ambiguous.
    env.config(&format!(
        "[codes]\npepper_file = \"{}\"\n",
        env.path("pepper").display()
    ));
    let both = env.run_with(&issue, "", Some(PEPPER));
    assert_eq!(both.code, 2);
    assert!(
        both.stderr.contains("configure exactly one"),
        "{}",
        both.stderr
    );
    // Group- or world-readable file.
    #[cfg(unix)]
    for mode in [0o644, 0o640] {
        write_pepper(&env.path("pepper"), PEPPER, mode);
        let out = env.run(&issue);
        assert_eq!(out.code, 2, "{mode:o}");
        assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
        assert!(!out.stderr.contains(PEPPER));
    }
    // The environment alone works.
    env.config("");
    let ok = env.run_with(&issue, "", Some(PEPPER));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn rotate_pepper_keeps_old_codes_working() {
    let env = Env::new();
    let old = env.issue(&["--purpose", "register-ip"]);
    let out = env.run(&[
        "--json",
        "code",
        "rotate-pepper",
        "--new-pepper-file",
        "pepper-2",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let new_id = v["new_pepper_id"].as_str().unwrap().to_owned();
    assert_eq!(v["live_codes_by_pepper"][0]["live_codes"], 1);
    let written = std::fs::read_to_string(env.path("pepper-2")).unwrap();
    assert!(!out.stdout.contains(written.trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("pepper-2"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites.
    let again = env.run(&["code", "rotate-pepper", "--new-pepper-file", "pepper-2"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"));
    // Switch as instructed: new current, old as previous.
    env.config(&format!(
        "[codes]\npepper_file = \"{}\"\nprevious_pepper_files = [\"{}\"]\n",
        env.path("pepper-2").display(),
        env.path("pepper").display()
    ));
    let v = env.run_with(&["code", "verify", "--purpose", "register-ip"], &old, None);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let new_code = env.issue(&["--purpose", "register-ip"]);
    let list = env.run(&["--json", "code", "list"]);
    let codes: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let new_code_id = &new_code.replace('-', "")[3..12];
    let entry = codes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code_id"] == new_code_id)
        .unwrap();
    assert_eq!(entry["pepper_id"], new_id.as_str());
    // Human report, with the run's pepper ids and paths filtered.
    let human = env.run(&["code", "rotate-pepper", "--new-pepper-file", "pepper-3"]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    let report = human.stdout.replace(&new_id, "[CURRENT-PEPPER]");
    let report = regex_free_pepper_ids(&report);
    snapshot!("rotate_pepper", report, env.dir);
    // Dropping the old pepper: its codes fail (generically), new ones work.
    env.config(&format!(
        "[codes]\npepper_file = \"{}\"\n",
        env.path("pepper-2").display()
    ));
    assert_eq!(
        env.run_with(&["code", "verify", "--purpose", "register-ip"], &old, None)
            .code,
        1
    );
    assert_eq!(
        env.run_with(
            &["code", "verify", "--purpose", "register-ip"],
            &new_code,
            None
        )
        .code,
        0
    );
}

/// Replace the random id of the pepper just written (named on the first
/// line) by a token of the same width, so columns stay aligned.
fn regex_free_pepper_ids(s: &str) -> String {
    let newest = s
        .strip_prefix("wrote new pepper ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    s.replace(&newest, "[NEWEST-PEPPER-]")
}

#[test]
fn bad_input_exits_2() {
    let env = Env::new();
    for (args, needle) in [
        (
            &[
                "code",
                "issue",
                "--space",
                "Acme",
                "--user",
                "a",
                "--purpose",
                "register-ip",
            ][..],
            "--space",
        ),
        (
            &["code", "issue", "--space", "acme", "--user", "a"][..],
            "--purpose is required",
        ),
        (
            &[
                "code",
                "issue",
                "--space",
                "acme",
                "--user",
                "a",
                "--purpose",
                "admin",
            ][..],
            "unknown purpose `admin`",
        ),
        (
            &[
                "code",
                "issue",
                "--space",
                "acme",
                "--user",
                "a",
                "--purpose",
                "register-ip",
                "--ttl",
                "14w",
            ][..],
            "not a duration",
        ),
        (
            &[
                "code",
                "issue",
                "--space",
                "acme",
                "--user",
                "a",
                "--recovery",
            ][..],
            "[recover-not-admin]: recovery codes and the purpose `recover` are for administrators",
        ),
        (&["code", "revoke", "abc"][..], "code id must be 9"),
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn help() {
    let env = Env::new();
    let out = env.run(&["code", "issue", "--help"]);
    assert_eq!(out.code, 0);
    snapshot!("issue_help", out.stdout, env.dir);
}

/// Every command names its operator in the audit log one way, `cli:<user>`
/// (issue 21: it was `operator:<user>`, `cli:<user>` and a bare name).
#[test]
fn the_operator_is_named_one_way_in_the_audit_log() {
    let env = Env::new();
    env.issue(&["--purpose", "register-ip"]);
    let state = env.path("state");
    let out = env.run(&[
        "rules",
        "add",
        "--space",
        "acme",
        "--cidr",
        "198.51.100.7",
        "--label",
        "desk",
        "--declared-by",
        "alice",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&[
        "ca", "disable", "--space", "acme", "--user", "alice", "--reason", "left",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = eos_store::Store::open(&env.path("state"))
        .unwrap()
        .audit_log(100)
        .unwrap();
    let actors: Vec<_> = log
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    for action in ["code.issue", "rule.added", "account.disabled"] {
        assert!(
            actors.iter().any(|(a, _)| *a == action),
            "{action}: {actors:?}"
        );
    }
    assert!(
        actors.iter().all(|(_, who)| *who == "cli:tester"),
        "{actors:?}"
    );
}
