//! `eos-sec cert renew` end to end: the real binary against a real `eos-sec
//! serve` over TLS on loopback, with certificates short enough (`[ca]
//! backdate = "0s"`, a 6-second service profile) that the daemon renews
//! several times in seconds. openssl verifies each new certificate against
//! the CA, from inside the `--exec` hook, while it is fresh.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{PEPPER, Serving};
use crate::{Env, openssl_available, serial_of};

/// The config both `ca sign` and `serve` read.
const CONFIG: &str = r#"
[ca]
backdate = "0s"

[ca.profiles.service]
lifetime = "6s"

[serve]
tls_cert = "server.pem"
tls_key = "server.key"
"#;

/// A CA, the service's TLS certificate (a self-signed leaf for 127.0.0.1,
/// the agent's `--ca-bundle`) and a first service certificate for
/// acme/svc in `svc.pem`/`svc.key`; returns its serial.
fn setup(env: &Env) -> String {
    setup_with(env, CONFIG)
}

/// [`setup`] with another config.
fn setup_with(env: &Env, config: &str) -> String {
    std::fs::write(env.path("eos-sec.toml"), config).unwrap();
    env.ok(&["ca", "init", "--env", "dev"]);
    crate::common::server_leaf(&env.path(""), "/CN=register.test", "IP:127.0.0.1");
    issue(env, "svc")
}

/// `eos-sec` with the test's config.
fn eos(env: &Env) -> Command {
    let mut c = env.command();
    c.env("EOS_SEC_CONFIG", env.path("eos-sec.toml"))
        .env("EOS_SEC_PEPPER", PEPPER)
        .env("USER", "op");
    c
}

/// A new key and a service certificate for acme/`name` from the CA.
fn issue(env: &Env, name: &str) -> String {
    issue_profile(env, name, "service")
}

/// A new key and a `profile` certificate for acme/`name` from the CA.
fn issue_profile(env: &Env, name: &str, profile: &str) -> String {
    env.openssl_csr(
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let out = eos(env)
        .args(["--json", "ca", "sign", "--space", "acme", "--user", name])
        .args(["--profile", profile, "--csr", &format!("{name}.csr")])
        .args(["--out", &format!("{name}.pem")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serial_of(&String::from_utf8(out.stdout).unwrap())
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn record(env: &Env, serial: &str) -> serde_json::Value {
    let out = eos(env)
        .args(["--json", "ca", "show", serial])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_daemon_renews_each_certificate_and_runs_the_hook_until_sigterm() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    let first = setup(&env);
    let serving = Serving::start_tls(eos(&env));
    let url = format!("https://127.0.0.1:{}", serving.port);
    // The hook: openssl verifies the new certificate against the CA while
    // it is fresh; the hook records what it was told.
    let hook = r#"n=$(wc -l < hook.log 2>/dev/null || echo 0)
openssl verify -CAfile state/ca/ca.pem -purpose sslclient "$EOS_SEC_CERT" > "verify-$n.txt" 2>&1
openssl x509 -noout -serial -in "$EOS_SEC_CERT" >> "verify-$n.txt"
test "$(stat -c %a "$EOS_SEC_KEY")" = 600 && echo key-0600 >> "verify-$n.txt"
echo "$EOS_SEC_RENEWED $EOS_SEC_SERIAL $EOS_SEC_NOT_AFTER" >> hook.log"#;
    let log = std::fs::File::create(env.path("agent.log")).unwrap();
    let mut agent = eos(&env)
        .args(["cert", "renew", "--daemon", "--rekey"])
        .args(["--cert", "svc.pem", "--key", "svc.key", "--url", &url])
        .args(["--ca-bundle", "server.pem", "--exec", hook])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let hooked = || std::fs::read_to_string(env.path("hook.log")).unwrap_or_default();
    let start = Instant::now();
    while hooked().lines().count() < 2 {
        if start.elapsed() > Duration::from_secs(40) || agent.try_wait().unwrap().is_some() {
            let _ = agent.kill();
            panic!(
                "two renewals expected; hook.log:\n{}\nagent:\n{}",
                hooked(),
                std::fs::read_to_string(env.path("agent.log")).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = agent.wait().unwrap();
    let logs = std::fs::read_to_string(env.path("agent.log")).unwrap();
    assert!(status.success(), "{status}: {logs}");
    assert!(logs.contains("renew agent stopped"), "{logs}");
    drop(serving);

    // Each renewal: the hook saw the new certificate verify against the CA
    // with its key 0600, and the inventory links it to the one it replaced.
    let mut previous = first;
    for (n, line) in hooked().lines().enumerate() {
        let [renewed, serial, _not_after] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{line}");
        };
        assert_eq!(renewed, previous, "{line}");
        let verified = std::fs::read_to_string(env.path(&format!("verify-{n}.txt"))).unwrap();
        assert!(verified.contains("svc.pem: OK"), "{verified}");
        assert!(
            verified
                .to_lowercase()
                .contains(&format!("serial={}", serial.trim_start_matches('0'))),
            "{verified}"
        );
        assert!(verified.contains("key-0600"), "{verified}");
        let rec = record(&env, serial);
        assert_eq!(rec["renewed_from"], renewed);
        assert_eq!(rec["space"], "acme");
        assert_eq!(rec["user"], "svc");
        assert_eq!(record(&env, renewed)["renewed_by"], serial);
        previous = serial.to_owned();
    }
    // The files hold the last successor, and its key.
    let pubkey = |args: &[&str]| env.openssl_ok(args).stdout;
    assert_eq!(
        pubkey(&["x509", "-noout", "-pubkey", "-in", "svc.pem"]),
        pubkey(&["pkey", "-pubout", "-in", "svc.key"])
    );
    let serial = env.openssl_ok(&["x509", "-noout", "-serial", "-in", "svc.pem"]);
    let serial = String::from_utf8(serial.stdout).unwrap().to_lowercase();
    assert!(
        serial.contains(previous.trim_start_matches('0')),
        "{serial} {previous}"
    );
    assert_eq!(mode(&env.path("svc.key")), 0o600);
}

#[test]
fn renew_once_prints_the_successor_and_bad_input_exits_2_writing_nothing() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    setup(&env);
    let serving = Serving::start_tls(eos(&env));
    let url = format!("https://127.0.0.1:{}", serving.port);
    let run = |args: &[&str]| {
        let out = eos(&env)
            .args(["cert", "renew", "--ca-bundle", "server.pem"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let files = ["--cert", "svc.pem", "--key", "svc.key"];
    let bad = |args: &[&str], want: &str| {
        let before = std::fs::read(env.path("svc.pem")).unwrap();
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(env.path("svc.pem")).unwrap(), before);
    };
    bad(
        &["--cert", "missing.pem", "--key", "svc.key", "--url", &url],
        "cannot read missing.pem",
    );
    bad(
        &["--cert", "svc.key", "--key", "svc.key", "--url", &url],
        "svc.key: not a PEM certificate",
    );
    env.p256_key("other.key");
    bad(
        &["--cert", "svc.pem", "--key", "other.key", "--url", &url],
        "other.key: not the key of the certificate in svc.pem",
    );
    let plain = format!("http://127.0.0.1:{}", serving.port);
    bad(
        &[&files[..], &["--url", &plain]].concat(),
        "must be an https:// URL",
    );
    bad(
        &[&files[..], &["--url", &url, "--timeout", "0s"]].concat(),
        "--timeout: must be above 0",
    );
    // A certificate of another CA: the service refuses it in the handshake.
    let other = Env::new();
    std::fs::write(other.path("eos-sec.toml"), CONFIG).unwrap();
    other.ok(&["ca", "init", "--env", "dev"]);
    let foreign = issue(&other, "svc");
    assert!(!foreign.is_empty());
    for f in ["svc.pem", "svc.key"] {
        std::fs::copy(other.path(f), env.path(&format!("foreign-{f}"))).unwrap();
    }
    let before = std::fs::read(env.path("foreign-svc.pem")).unwrap();
    let (code, _, stderr) = run(&[
        "--cert",
        "foreign-svc.pem",
        "--key",
        "foreign-svc.key",
        "--url",
        &url,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("refused foreign-svc.pem in the TLS handshake"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(env.path("foreign-svc.pem")).unwrap(), before);

    // Once, in its window (from 4 of 6 seconds), with the hook.
    let issued = Instant::now();
    let first = issue(&env, "svc");
    std::thread::sleep(Duration::from_millis(4300).saturating_sub(issued.elapsed()));
    let (code, stdout, stderr) = run(&[
        &files[..],
        &["--url", &url, "--exec", "echo \"$EOS_SEC_SERIAL\" > hooked"],
    ]
    .concat());
    assert_eq!(code, 0, "{stderr}");
    let serial = std::fs::read_to_string(env.path("hooked")).unwrap();
    let serial = serial.trim();
    assert_eq!(
        stdout,
        format!(
            "renewed {first} as {serial}, valid until {}\nwrote svc.pem\n",
            record(&env, serial)["not_after"].as_str().unwrap()
        )
    );
    assert_eq!(record(&env, serial)["renewed_from"], first.as_str());
    // At once again: too early, retryable (exit 1), nothing replaced.
    let before = std::fs::read(env.path("svc.pem")).unwrap();
    let (code, _, stderr) = run(&[&files[..], &["--url", &url, "--json"]].concat());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("renewal-too-early"), "{stderr}");
    assert_eq!(std::fs::read(env.path("svc.pem")).unwrap(), before);
}

/// `[ca] backdate` is checked where the config is used: at most 1h, and
/// shorter than every profile's default lifetime; a refused value exits 2
/// and nothing is signed.
#[test]
fn a_backdate_longer_than_an_hour_or_a_lifetime_is_refused() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    env.openssl_csr(
        "svc",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    for (config, want) in [
        (
            "[ca]\nbackdate = \"2h\"\n",
            "[ca]: backdate 2h must be at most 1h",
        ),
        (
            "[ca]\nbackdate = \"10m\"\n[ca.profiles.service]\nlifetime = \"10m\"\n",
            "[ca]: profile service: default lifetime 10m must be longer than the backdate 10m",
        ),
        ("[ca]\nbackdate = \"1.5s\"\n", "[ca] backdate"),
    ] {
        std::fs::write(env.path("eos-sec.toml"), config).unwrap();
        let out = eos(&env)
            .args(["ca", "sign", "--space", "acme", "--user", "svc"])
            .args([
                "--profile",
                "service",
                "--csr",
                "svc.csr",
                "--out",
                "svc.pem",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {stderr}");
        assert!(stderr.contains(want), "{config}: {stderr}");
        assert!(!env.path("svc.pem").exists());
    }
}

/// `ca expiring` says which certificates were renewed (the successor's
/// serial); `ca disable` stops renewal (`account-disabled`) until `ca
/// enable`, both audited. The service renews at once here (`[serve]
/// renewal_window = 1.0`), with hour-long certificates.
#[test]
fn expiring_shows_renewals_and_a_disabled_account_renews_no_more() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    let old = setup_with(
        &env,
        &CONFIG
            .replace("\"6s\"", "\"1h\"")
            .replace("[serve]", "[serve]\nrenewal_window = 1.0"),
    );
    let bob = issue_profile(&env, "bob", "device");
    let serving = Serving::start_tls(eos(&env));
    let url = format!("https://127.0.0.1:{}", serving.port);
    let run = |args: &[&str]| {
        let out = eos(&env).args(args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let renew = || {
        run(&[
            "cert",
            "renew",
            "--cert",
            "svc.pem",
            "--key",
            "svc.key",
            "--url",
            &url,
            "--ca-bundle",
            "server.pem",
            "--json",
        ])
    };
    // A successor whose notAfter is a second later than its predecessor's.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, stdout, stderr) = renew();
    assert_eq!(code, 0, "{stderr}");
    let new: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let new = new["serial"].as_str().unwrap().to_owned();

    let (code, expiring, _) = run(&["ca", "expiring", "--within", "3d"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = expiring.lines().collect();
    assert!(
        rows[1].starts_with(&old) && rows[1].ends_with(&new),
        "{expiring}"
    );
    assert!(
        rows[2].starts_with(&new) && rows[2].ends_with(" -"),
        "{expiring}"
    );
    assert!(
        rows[3].starts_with(&bob) && rows[3].ends_with(" -"),
        "{expiring}"
    );
    let (_, json, _) = run(&["--json", "ca", "expiring", "--within", "3d"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json[0]["renewed_by"], new.as_str());
    assert_eq!(json[1]["renewed_from"], old.as_str());

    let account = ["--space", "acme", "--user", "svc"];
    let disable = [
        &["ca", "disable"][..],
        &account,
        &["--reason", "left the team"],
    ]
    .concat();
    let (code, disabled, stderr) = run(&disable);
    assert_eq!(code, 0, "{stderr}");
    let (_, again, _) = run(&[&["--json"][..], &disable].concat());
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["status"], "already-disabled");
    assert_eq!(again["disabled"]["reason"], "left the team");
    let (code, _, stderr) = renew();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("account-disabled"), "{stderr}");
    let (code, _, stderr) = run(&[&["ca", "disable"][..], &account, &["--reason", " "]].concat());
    assert_eq!(code, 2, "{stderr}");

    let (code, enabled, stderr) = run(&[&["ca", "enable"][..], &account].concat());
    assert_eq!(code, 0, "{stderr}");
    let (_, not_disabled, _) = run(&[&["ca", "enable"][..], &account].concat());
    assert!(
        not_disabled.starts_with("not-disabled acme/svc"),
        "{not_disabled}"
    );
    let (code, _, stderr) = renew();
    assert_eq!(code, 0, "{stderr}");
    drop(serving);

    insta::with_settings!({filters => vec![
        (r"\b[0-9a-f]{16,40}\b", "[SERIAL]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
    ]}, {
        insta::assert_snapshot!("expiring", expiring);
        insta::assert_snapshot!("disable", disabled);
        insta::assert_snapshot!("enable", enabled);
    });

    // Audited: who, what and why, on the account's URI.
    let log = eos_store::Store::open(&env.state())
        .unwrap()
        .audit_log(100)
        .unwrap();
    let uri = "urn:entityos:space:acme:user:svc";
    let entries: Vec<_> = log
        .iter()
        .filter(|e| e.action.starts_with("account."))
        .map(|e| (e.action.as_str(), e.subject.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one entry each, none for the no-op repeats: {entries:?}"
    );
    assert!(
        entries.contains(&("account.disabled", uri, "cli:op")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("account.enabled", uri, "cli:op")),
        "{entries:?}"
    );
}
