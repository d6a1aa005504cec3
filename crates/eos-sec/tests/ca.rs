#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! `eos-sec ca ...` end to end, with the real openssl as the oracle for
//! every certificate and CRL: verify with `-purpose sslclient`,
//! `-crl_check`, CSRs from `openssl req`, and an mTLS handshake between
//! `openssl s_server -Verify` and `openssl s_client` on 127.0.0.1.

mod common;
#[path = "ca/renew.rs"]
mod renew;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/data/csr/{name}"))
}

/// openssl is an outside oracle: skip loudly when missing, unless CI or
/// EOS_SEC_REQUIRE_ORACLES=1 make that a failure.
fn openssl_available() -> bool {
    oracle_available("openssl", "openssl", &["version"], "openssl")
}

/// Whether `program args` runs; when not, a loud skip, or a failure under
/// CI or EOS_SEC_REQUIRE_ORACLES=1.
/// `name` is the oracle's name in `cargo xtask ci`'s oracle report.
fn oracle_available(name: &str, program: &str, args: &[&str], what: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    eos_store::testing::record_oracle(name, ok);
    if !ok {
        let required = std::env::var_os("CI").is_some()
            || std::env::var("EOS_SEC_REQUIRE_ORACLES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{what} is required (CI / EOS_SEC_REQUIRE_ORACLES) but missing"
        );
        eprintln!("SKIPPED: {what} not installed; this test needs it as an oracle");
    }
    ok
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn eos(&self, args: &[&str]) -> Output {
        self.eos_env(args, &[])
    }

    /// `eos-sec` in this directory with its state (no config file unless
    /// `env` names one).
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
        cmd.env("EOS_SEC_STATE_DIR", self.state())
            .env_remove("EOS_SEC_CONFIG")
            .current_dir(self.dir.path());
        cmd
    }

    fn eos_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.eos(args);
        assert!(
            out.status.success(),
            "eos-sec {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn openssl(&self, args: &[&str]) -> Output {
        Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// A fresh key and CSR from `openssl req`.
    fn openssl_csr(&self, name: &str, genpkey: &[&str]) -> PathBuf {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let mut args = vec!["genpkey", "-out", &key];
        args.extend_from_slice(genpkey);
        assert!(self.openssl(&args).status.success());
        self.openssl_ok(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=ignored/O=ignored",
            "-out",
            &csr,
        ]);
        self.path(&csr)
    }

    /// A new P-256 key in `file`, made by openssl.
    fn p256_key(&self, file: &str) {
        self.openssl_ok(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            file,
        ]);
    }

    /// Run openssl, which must succeed.
    fn openssl_ok(&self, args: &[&str]) -> Output {
        let out = self.openssl(args);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn verify(&self, extra: &[&str], cert: &str) -> Output {
        let mut args = vec!["verify", "-purpose", "sslclient"];
        args.extend_from_slice(extra);
        args.push(cert);
        self.openssl(&args)
    }
}

fn serial_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["serial"].as_str().unwrap().to_owned()
}

#[test]
fn init_sign_list_revoke_crl_bundle_agree_with_openssl() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.state().join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let alice_csr = env.openssl_csr(
        "alice",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let signed = env.ok(&[
        "--json",
        "ca",
        "sign",
        "--csr",
        alice_csr.to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
        "--out",
        "alice.pem",
    ]);
    let serial = serial_of(&signed);
    env.ok(&["ca", "bundle", "--out", "bundle.pem"]);

    let out = env.verify(&["-CAfile", "bundle.pem"], "alice.pem");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The contents, as openssl reads them.
    let text = env.openssl(&["x509", "-in", "alice.pem", "-noout", "-text"]);
    let text = String::from_utf8(text.stdout).unwrap();
    for want in [
        "Subject: O = acme, CN = alice",
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "X509v3 Key Usage: critical\n                Digital Signature\n",
        "TLS Web Client Authentication\n",
        "URI:urn:entityos:space:acme:user:alice",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains("ignored"),
        "CSR subject leaked into the certificate"
    );

    // Listed; shown; its PEM is the one written.
    let list = env.ok(&["ca", "list"]);
    assert!(list.contains(&serial) && list.contains("active"), "{list}");
    let show = env.ok(&["ca", "show", &serial]);
    let list_json = env.ok(&["--json", "ca", "list"]);
    insta::with_settings!({filters => vec![
        (r"[0-9a-f]{64}", "[FINGERPRINT]"),
        (r"\b[0-9a-f]{16,40}\b", "[SERIAL]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
        (r"-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----\\n", "[PEM]"),
        (r"cli:[A-Za-z0-9_.-]+", "cli:[USER]"),
    ]}, {
        insta::assert_snapshot!("list", list);
        insta::assert_snapshot!("show", show);
        insta::assert_snapshot!("list_json", list_json);
    });
    let pem = env.ok(&["ca", "show", &serial, "--pem"]);
    assert_eq!(pem, std::fs::read_to_string(env.path("alice.pem")).unwrap());

    // Before revocation the CRL check passes; after, openssl says revoked.
    let crl_before = env.ok(&["ca", "crl", "--out", "crl1.pem"]);
    assert!(crl_before.contains("BEGIN X509 CRL"));
    let chain = |crl: &str| {
        let mut s = std::fs::read_to_string(env.path("bundle.pem")).unwrap();
        s.push_str(&std::fs::read_to_string(env.path(crl)).unwrap());
        std::fs::write(env.path("chain.pem"), s).unwrap();
    };
    chain("crl1.pem");
    let out = env.verify(&["-crl_check", "-CAfile", "chain.pem"], "alice.pem");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let revoked = env.ok(&[
        "--json",
        "ca",
        "revoke",
        &serial,
        "--reason",
        "key-compromise",
    ]);
    let v: serde_json::Value = serde_json::from_str(&revoked).unwrap();
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["certificate"]["serial"], serial.as_str(), "{v}");
    let crl_number = v["crl_number"].as_u64().unwrap();
    std::fs::copy(env.state().join("ca/crl.pem"), env.path("crl2.pem")).unwrap();
    chain("crl2.pem");
    let out = env.verify(&["-crl_check", "-CAfile", "chain.pem"], "alice.pem");
    assert!(!out.status.success());
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("certificate revoked"), "{msg}");

    // The CRL: number grew, nextUpdate within 24h, AKI = the CA's SKI.
    let crl_text = String::from_utf8(
        env.openssl(&["crl", "-in", "crl2.pem", "-noout", "-text"])
            .stdout,
    )
    .unwrap();
    assert!(
        crl_text.contains(&format!(
            "X509v3 CRL Number: \n                {crl_number}"
        )),
        "{crl_text}"
    );
    assert!(crl_text.contains("Key Compromise"));
    let ca_text = String::from_utf8(
        env.openssl(&[
            "x509",
            "-in",
            "bundle.pem",
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ])
        .stdout,
    )
    .unwrap();
    let ski = ca_text.lines().nth(1).unwrap().trim().to_owned();
    assert!(
        crl_text.contains(&ski),
        "CRL AKI is not the CA's SKI {ski}:\n{crl_text}"
    );
    let crl1_number: u64 = {
        let t = String::from_utf8(
            env.openssl(&["crl", "-in", "crl1.pem", "-noout", "-crlnumber"])
                .stdout,
        )
        .unwrap();
        u64::from_str_radix(
            t.trim()
                .trim_start_matches("crlNumber=0x")
                .trim_start_matches("crlNumber="),
            16,
        )
        .unwrap()
    };
    assert!(crl_number > crl1_number);
    let next = String::from_utf8(
        env.openssl(&[
            "crl",
            "-in",
            "crl2.pem",
            "-noout",
            "-nextupdate",
            "-lastupdate",
        ])
        .stdout,
    )
    .unwrap();
    assert!(next.contains("nextUpdate="), "{next}");

    // Revoking again changes nothing and issues no CRL.
    let again = env.ok(&["--json", "ca", "revoke", &serial]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["status"], "already-revoked", "{again}");
    assert_eq!(again["certificate"]["status"], "revoked", "{again}");
    let list = env.ok(&["--json", "ca", "list", "--status", "revoked"]);
    assert!(list.contains(&serial));
}

#[test]
fn refused_csrs_exit_2_with_the_code_and_write_nothing() {
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    for (file, code) in [
        ("rsa1024.csr", "csr-rsa-key-size"),
        ("rsa-e3.csr", "csr-rsa-exponent"),
        ("sha1.csr", "csr-weak-hash"),
        ("rsa-md5.csr", "csr-weak-hash"),
        ("secp256k1.csr", "csr-unsupported-curve"),
        ("dsa.csr", "csr-unsupported-key"),
        ("explicit-params.csr", "csr-explicit-curve-params"),
        ("ed25519.csr", "csr-unsupported-key"),
    ] {
        let out = env.eos(&[
            "ca",
            "sign",
            "--csr",
            fixture(file).to_str().unwrap(),
            "--space",
            "acme",
            "--user",
            "alice",
            "--profile",
            "cli",
            "--out",
            "out.pem",
        ]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("csr refused [{code}]")),
            "{file}: {err}"
        );
        assert!(!env.path("out.pem").exists(), "{file}: wrote output");
        let json = env.eos(&[
            "--json",
            "ca",
            "sign",
            "--csr",
            fixture(file).to_str().unwrap(),
            "--space",
            "acme",
            "--user",
            "alice",
            "--profile",
            "cli",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["status"], "refused", "{v}");
        assert_eq!(v["refusals"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["refusals"][0]["code"], code, "{v}");
        assert!(v["refusals"][0]["message"].is_string(), "{v}");
    }
    assert_eq!(env.ok(&["ca", "list"]), "no certificates\n");
    // Every refusal is audited with its code and the account, never the CSR.
    let store = eos_store::Store::open(&env.state()).unwrap();
    let rows: Vec<(String, String)> = eos_store::Sql::query(
        store.conn(),
        "SELECT subject, detail FROM audit_log WHERE action = 'ca.csr-refused' ORDER BY id",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap();
    assert_eq!(rows.len(), 16);
    assert_eq!(rows[0].0, "csr-rsa-key-size");
    for (_, detail) in &rows {
        let d: serde_json::Value = serde_json::from_str(detail).unwrap();
        assert_eq!(d["space"], "acme");
        assert_eq!(d["user"], "alice");
        assert!(
            !detail.contains("BEGIN") && !detail.contains("MII"),
            "{detail}"
        );
    }
}

#[test]
fn key_reuse_across_accounts_is_refused_and_ca_request_is_logged() {
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    let csr = fixture("ca-request.csr");
    let csr = csr.to_str().unwrap();
    let out = env.ok(&[
        "ca",
        "sign",
        "--csr",
        csr,
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "device",
        "--out",
        "a.pem",
    ]);
    assert!(out.contains("asked for CA powers"), "{out}");
    // Same account again: a renewal, allowed.
    env.ok(&[
        "ca",
        "sign",
        "--csr",
        csr,
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "device",
        "--out",
        "b.pem",
    ]);
    // Another account with the same key: refused.
    let out = env.eos(&[
        "ca",
        "sign",
        "--csr",
        csr,
        "--space",
        "other",
        "--user",
        "alice",
        "--profile",
        "device",
        "--out",
        "c.pem",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[csr-key-reuse]"));
    assert!(!env.path("c.pem").exists());
    // Over the profile's cap: refused as bad input.
    let out = env.eos(&[
        "ca",
        "sign",
        "--csr",
        csr,
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "service",
        "--lifetime",
        "8d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[lifetime-over-cap]"));
}

#[test]
fn openssl_req_csrs_are_accepted() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "staging"]);
    env.ok(&["ca", "bundle", "--out", "bundle.pem"]);
    let cases: [(&str, &[&str]); 3] = [
        (
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        (
            "rsa2048",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
    ];
    for (i, (name, gen_args)) in cases.into_iter().enumerate() {
        let csr = env.openssl_csr(name, gen_args);
        let user = format!("user{i}");
        let out = format!("{name}.pem");
        env.ok(&[
            "ca",
            "sign",
            "--csr",
            csr.to_str().unwrap(),
            "--space",
            "acme",
            "--user",
            &user,
            "--profile",
            "service",
            "--out",
            &out,
        ]);
        let v = env.verify(&["-CAfile", "bundle.pem"], &out);
        assert!(
            v.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
    // RSA-4096 from the fixture (generating one here is slow).
    env.ok(&[
        "ca",
        "sign",
        "--csr",
        fixture("rsa4096.csr").to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "big",
        "--profile",
        "service",
        "--out",
        "rsa4096.pem",
    ]);
    assert!(
        env.verify(&["-CAfile", "bundle.pem"], "rsa4096.pem")
            .status
            .success()
    );
}

#[test]
fn environments_do_not_trust_each_other() {
    if !openssl_available() {
        return;
    }
    let dev = Env::new();
    let prod = Env::new();
    dev.ok(&["ca", "init", "--env", "dev"]);
    prod.ok(&["ca", "init", "--env", "prod"]);
    let dev_bundle = dev.ok(&["ca", "bundle"]);
    let prod_bundle = prod.ok(&["ca", "bundle"]);
    assert_ne!(dev_bundle, prod_bundle);
    dev.ok(&[
        "ca",
        "sign",
        "--csr",
        fixture("p256.csr").to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
        "--out",
        "alice.pem",
    ]);
    std::fs::write(dev.path("prod.pem"), &prod_bundle).unwrap();
    std::fs::write(dev.path("dev.pem"), &dev_bundle).unwrap();
    assert!(
        dev.verify(&["-CAfile", "dev.pem"], "alice.pem")
            .status
            .success()
    );
    let out = dev.verify(&["-CAfile", "prod.pem"], "alice.pem");
    assert!(
        !out.status.success(),
        "a dev certificate verified under the prod root"
    );
    let text = String::from_utf8(
        dev.openssl(&["x509", "-in", "prod.pem", "-noout", "-subject"])
            .stdout,
    )
    .unwrap();
    assert!(text.contains("entityOS prod Root CA"), "{text}");
}

#[test]
fn encrypted_key_needs_its_passphrase_variable() {
    let env = Env::new();
    std::fs::write(
        env.path("eos-sec.toml"),
        "[ca]\nkey_passphrase_env = \"TEST_CA_PASS\"\n",
    )
    .unwrap();
    let pass = [("TEST_CA_PASS", "correct horse battery staple")];
    let out = env.eos_env(&["ca", "init", "--env", "dev"], &pass);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(env.state().join("ca/ca.key")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let csr = fixture("p256.csr");
    let sign = [
        "ca",
        "sign",
        "--csr",
        csr.to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
        "--out",
        "a.pem",
    ];
    let out = env.eos_env(&sign, &pass);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.eos(&sign);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TEST_CA_PASS is not set"));
    let out = env.eos_env(&sign, &[("TEST_CA_PASS", "wrong")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot decrypt"));
}

#[test]
fn import_an_openssl_made_ca() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.p256_key("ca.key");
    env.self_signed_ca("ca.key", "/O=Example/CN=Imported CA", "ca.pem");
    env.ok(&["ca", "import", "--key", "ca.key", "--cert", "ca.pem"]);
    env.ok(&[
        "ca",
        "sign",
        "--csr",
        fixture("p384.csr").to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "browser",
        "--out",
        "a.pem",
    ]);
    let v = env.verify(&["-CAfile", "ca.pem"], "a.pem");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // The certificate cannot outlive the CA (30 days < browser's 30 days + backdate).
    let end = String::from_utf8(
        env.openssl(&["x509", "-in", "a.pem", "-noout", "-checkend", "2678400"])
            .stdout,
    )
    .unwrap();
    assert!(end.contains("will expire"), "{end}");
    // A non-CA certificate is refused.
    let out = env.openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=leaf",
        "-days",
        "1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-out",
        "leaf.pem",
    ]);
    assert!(out.status.success());
    let other = Env::new();
    std::fs::copy(env.path("ca.key"), other.path("ca.key")).unwrap();
    std::fs::copy(env.path("leaf.pem"), other.path("leaf.pem")).unwrap();
    let out = other.eos(&["ca", "import", "--key", "ca.key", "--cert", "leaf.pem"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CA"));
}

/// Run s_server (one connection, client certificate required, trusting
/// `ca`) and s_client with `client_cert`; returns whether the handshake was
/// accepted and the server's output.
fn handshake(env: &Env, ca: &str, client_cert: &str, client_key: &str) -> (bool, String) {
    let port = free_port().to_string();
    let accept = format!("127.0.0.1:{port}");
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &accept,
            "-naccept",
            "1",
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-Verify",
            "1",
            "-CAfile",
            ca,
            "-verify_return_error",
            "-purpose",
            "sslclient",
        ])
        .current_dir(env.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Probing the port would use up -naccept 1: the client retries until
    // the server listens instead.
    let connect = format!("127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..50 {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &connect,
                "-cert",
                client_cert,
                "-key",
                client_key,
                "-CAfile",
                "server.pem",
                "-verify_return_error",
                "-tls1_3",
            ])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        if text.contains("Connection refused") || text.contains("connect:errno") {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        client = Some(out);
        break;
    }
    let client = client.expect("s_client could not connect");
    // The server exits after its one connection.
    let start = Instant::now();
    loop {
        if server.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            server.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = server.wait();
    let accepted = out.contains("CN = alice") && !out.contains("error") && client.status.success();
    (accepted, out + &String::from_utf8_lossy(&client.stdout))
}

#[test]
fn mtls_handshake_with_an_issued_certificate() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    env.ok(&["ca", "bundle", "--out", "bundle.pem"]);
    let csr = env.openssl_csr(
        "alice",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    env.ok(&[
        "ca",
        "sign",
        "--csr",
        csr.to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
        "--out",
        "alice.pem",
    ]);
    let out = env.openssl(&[
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-out",
        "server.pem",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (ok, log) = handshake(&env, "bundle.pem", "alice.pem", "alice.key");
    assert!(
        ok,
        "mTLS handshake with the issued certificate failed:\n{log}"
    );

    // The same client against a server that trusts another environment's CA
    // is turned away.
    let prod = Env::new();
    prod.ok(&["ca", "init", "--env", "prod"]);
    std::fs::write(env.path("prod.pem"), prod.ok(&["ca", "bundle"])).unwrap();
    let (ok, log) = handshake(&env, "prod.pem", "alice.pem", "alice.key");
    assert!(
        !ok,
        "a dev certificate was accepted by a prod-trusting server:\n{log}"
    );
}

#[test]
fn a_certificate_signed_but_not_written_is_not_recorded_and_says_so() {
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    // The output's directory does not exist: the certificate is signed,
    // then cannot be written, so the inventory is rolled back and the error
    // names the certificate and what became of it.
    let out = env.eos(&[
        "ca",
        "sign",
        "--csr",
        fixture("p256.csr").to_str().unwrap(),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
        "--out",
        "missing/alice.pem",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let serial = err
        .split("certificate ")
        .nth(1)
        .and_then(|rest| {
            rest.split(" was signed but not recorded; the signer keeps no copy")
                .next()
        })
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        !serial.is_empty() && serial.bytes().all(|b| b.is_ascii_hexdigit()),
        "{err}"
    );
    assert!(err.contains("a temporary file in missing"), "{err}");
    assert_eq!(env.ok(&["ca", "list"]), "no certificates\n");
}

impl Env {
    /// A self-signed CA certificate (30 days) for the key in `key`.
    fn self_signed_ca(&self, key: &str, subject: &str, out: &str) {
        self.openssl_ok(&[
            "req",
            "-x509",
            "-new",
            "-key",
            key,
            "-subj",
            subject,
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            out,
        ]);
    }

    /// `eos-sec ca sign` for `space/user` with profile `cli`.
    fn sign(&self, csr: &str, space: &str, user: &str, out: &str) -> Output {
        self.sign_with(csr, space, user, &["--out", out])
    }

    /// `eos-sec ca sign` for `space/user` with profile `cli` and `extra`.
    fn sign_with(&self, csr: &str, space: &str, user: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "ca",
            "sign",
            "--csr",
            csr,
            "--space",
            space,
            "--user",
            user,
            "--profile",
            "cli",
        ];
        args.extend_from_slice(extra);
        self.eos(&args)
    }

    /// The key in `key` written again with its point compressed
    /// (`openssl ec -conv_form compressed`), and a CSR made from that.
    fn compressed_csr(&self, key: &str, name: &str) -> String {
        let squeezed = format!("{name}.key");
        self.openssl_ok(&[
            "ec",
            "-in",
            key,
            "-conv_form",
            "compressed",
            "-out",
            &squeezed,
        ]);
        let csr = format!("{name}.csr");
        self.openssl_ok(&[
            "req",
            "-new",
            "-key",
            &squeezed,
            "-subj",
            "/CN=ignored",
            "-out",
            &csr,
        ]);
        assert_eq!(self.point_prefix("req", &csr), "02 or 03", "{csr}");
        csr
    }

    /// Whether the EC point `openssl <cmd> -text` prints for `file` is
    /// uncompressed (`04`) or compressed (`02 or 03`).
    fn point_prefix(&self, cmd: &str, file: &str) -> &'static str {
        let out = self.openssl(&[cmd, "-in", file, "-noout", "-text"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let after = text
            .split("pub:")
            .nth(1)
            .unwrap_or_else(|| panic!("{text}"));
        match after.trim_start().get(..3) {
            Some("04:") => "04",
            Some("02:" | "03:") => "02 or 03",
            other => panic!("unexpected point {other:?} in {text}"),
        }
    }
}

fn refused_with(out: &Output, code: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("[{code}]")), "{err}");
}

/// One key is one key whatever its encoding: a CSR carrying the compressed
/// form of a key bound to alice is refused for bob, the CA's own key in
/// compressed form is refused as the CA's key, and a certificate for a
/// compressed key carries the point uncompressed (RFC 5480 §2.2: every
/// verifier supports that form).
#[test]
fn a_compressed_point_is_the_same_key() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    let alice = env.openssl_csr(
        "alice",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let out = env.sign(alice.to_str().unwrap(), "acme", "alice", "alice.pem");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob = env.compressed_csr("alice.key", "bob");
    refused_with(&env.sign(&bob, "acme", "bob", "bob.pem"), "csr-key-reuse");
    assert!(!env.path("bob.pem").exists());

    let ca_key = env.state().join("ca/ca.key");
    let mallory = env.compressed_csr(ca_key.to_str().unwrap(), "mallory");
    refused_with(
        &env.sign(&mallory, "acme", "mallory", "mallory.pem"),
        "csr-ca-key",
    );

    // P-384, compressed first: the certificate carries the point
    // uncompressed, and the uncompressed form is then the same key.
    let carol = env.openssl_csr(
        "carol",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    let carol_squeezed = env.compressed_csr("carol.key", "carol-c");
    let out = env.sign(&carol_squeezed, "acme", "carol", "carol.pem");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.point_prefix("x509", "carol.pem"), "04");
    env.ok(&["ca", "bundle", "--out", "bundle.pem"]);
    let v = env.verify(&["-CAfile", "bundle.pem"], "carol.pem");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    refused_with(
        &env.sign(carol.to_str().unwrap(), "acme", "dave", "dave.pem"),
        "csr-key-reuse",
    );
    // The certificate matches the private key it was requested with.
    let out = env.openssl(&["x509", "-in", "carol.pem", "-noout", "-pubkey"]);
    let cert_key = String::from_utf8(out.stdout).unwrap();
    let out = env.openssl(&["pkey", "-in", "carol.key", "-pubout"]);
    assert_eq!(cert_key, String::from_utf8(out.stdout).unwrap());
}

/// Python with `cryptography` and pkilint, the outside linters: skip
/// loudly when missing, unless CI or EOS_SEC_REQUIRE_ORACLES=1.
fn linters_available() -> bool {
    oracle_available(
        "pkilint",
        "python3",
        &["-c", "import cryptography, pkilint"],
        "python3 with cryptography and pkilint",
    )
}

impl Env {
    /// What pkilint (`lint_pkix_cert`, RFC 5280) finds at WARNING or above
    /// in a certificate, as (code, message). One finding is left out:
    /// pkilint checks a URI SAN with `validators.url`, which knows URLs
    /// only, and calls every URN (RFC 8141, an absolute URI per RFC 3986 as
    /// RFC 5280 §4.2.1.6 asks) `pkix.invalid_uri_syntax`.
    fn pkilint(&self, cert: &str) -> Vec<(String, String)> {
        let out = Command::new("python3")
            .args([
                "-m",
                "pkilint.bin.lint_pkix_cert",
                "lint",
                "-s",
                "WARNING",
                "-f",
                "JSON",
                cert,
            ])
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("pkilint: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        let mut found = Vec::new();
        for result in report["results"].as_array().unwrap() {
            for f in result["finding_descriptions"].as_array().unwrap() {
                let code = f["code"].as_str().unwrap().to_owned();
                let message = f["message"].as_str().unwrap_or_default().to_owned();
                if code == "pkix.invalid_uri_syntax" && message.contains("\"urn:entityos:space:") {
                    continue;
                }
                found.push((code, message));
            }
        }
        found
    }

    /// Load a certificate with Python `cryptography`, every warning an
    /// error; returns what it read as the subject and the URI SAN.
    fn cryptography_reads(&self, cert: &str) -> String {
        let script = "import sys\n\
            from cryptography import x509\n\
            with open(sys.argv[1], 'rb') as f:\n\
            \x20   c = x509.load_pem_x509_certificate(f.read())\n\
            san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value\n\
            print(c.subject.rfc4514_string())\n\
            print(san.get_values_for_type(x509.UniformResourceIdentifier)[0])\n";
        let out = Command::new("python3")
            .args(["-W", "error", "-c", script, cert])
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cryptography refused {cert}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// RFC 5280's ub-common-name is 64 characters, user ids may have 128: a
/// user id that does not fit a CommonName is carried by the URI SAN only,
/// and every certificate lints clean (pkilint, Python cryptography with
/// warnings as errors, openssl).
#[test]
fn long_user_ids_fit_the_certificate() {
    if !openssl_available() || !linters_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    for (n, len) in [64usize, 65, 128].into_iter().enumerate() {
        let user = format!("u{}", "x".repeat(len - 1));
        let name = format!("user{n}");
        let csr = env.openssl_csr(
            &name,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        let cert = format!("{name}.pem");
        let out = env.sign(csr.to_str().unwrap(), "acme", &user, &cert);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(env.pkilint(&cert), Vec::<(String, String)>::new(), "{len}");
        let read = env.cryptography_reads(&cert);
        let subject = if len <= 64 {
            format!("CN={user},O=acme")
        } else {
            "O=acme".to_owned()
        };
        assert_eq!(
            read,
            format!("{subject}\nurn:entityos:space:acme:user:{user}\n"),
            "{len}"
        );
        let v = env.verify(&["-CAfile", "state/ca/ca.pem"], &cert);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
}

fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The CRL is backdated like a certificate's notBefore, so a verifier
/// whose clock is a minute behind still reads it; an `unspecified`
/// revocation carries no reasonCode (RFC 5280 §5.3.1: absent rather than
/// unspecified), a real reason does; pkilint finds nothing in the CRL.
#[test]
fn the_crl_is_backdated_and_names_only_real_reasons() {
    if !openssl_available() || !linters_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    let mut serials = Vec::new();
    for (name, reason) in [("alice", "unspecified"), ("bob", "key-compromise")] {
        let csr = env.openssl_csr(
            name,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        let out = env.ok(&[
            "--json",
            "ca",
            "sign",
            "--csr",
            csr.to_str().unwrap(),
            "--space",
            "acme",
            "--user",
            name,
            "--profile",
            "cli",
            "--out",
            &format!("{name}.pem"),
        ]);
        let serial = serial_of(&out);
        env.ok(&["ca", "revoke", &serial, "--reason", reason]);
        serials.push(serial);
    }
    env.ok(&["ca", "crl", "--out", "crl.pem"]);
    let text = env.openssl_ok(&["crl", "-in", "crl.pem", "-noout", "-text"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.matches("CRL Reason Code").count(), 1, "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    let behind = (epoch_now() - 60).to_string();
    let v = env.verify(
        &[
            "-CAfile",
            "state/ca/ca.pem",
            "-CRLfile",
            "crl.pem",
            "-crl_check",
            "-attime",
            &behind,
        ],
        "alice.pem",
    );
    let said = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(said.contains("certificate revoked"), "{said}");
    assert!(!said.contains("not yet valid"), "{said}");
    let out = Command::new("python3")
        .args([
            "-m",
            "pkilint.bin.lint_crl",
            "lint",
            "-t",
            "CRL",
            "-p",
            "PKIX",
            "-s",
            "WARNING",
            "crl.pem",
        ])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.trim_ascii().is_empty(),
        "pkilint ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a refusal says: the real size of a file over the cap, a lifetime
/// refused as a lifetime (and 0s as empty, not as over its cap), and a CSR
/// with `openssl req -text`'s explanation before the PEM accepted.
#[test]
fn refusals_name_what_was_refused() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    env.ok(&["ca", "init", "--env", "dev"]);
    let mut big = std::fs::read(fixture("p256.csr")).unwrap();
    big.resize(20_000, b'\n');
    std::fs::write(env.path("big.csr"), &big).unwrap();
    let out = env.sign("big.csr", "acme", "alice", "big.pem");
    refused_with(&out, "csr-too-large");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("csr is 20000 bytes, more than the 8192-byte limit"),
        "{err}"
    );

    let csr = fixture("p256.csr");
    let csr = csr.to_str().unwrap();
    for (lifetime, code, says) in [
        ("31d", "lifetime-over-cap", "is over its cap 30d"),
        (
            "0s",
            "lifetime-zero",
            "lifetime 0s for profile cli is empty",
        ),
    ] {
        let out = env.sign_with(csr, "acme", "alice", &["--lifetime", lifetime]);
        refused_with(&out, code);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("lifetime refused [{code}]")), "{err}");
        assert!(!err.contains("csr refused"), "{err}");
        assert!(err.contains(says), "{err}");
    }

    env.openssl_ok(&["req", "-in", csr, "-text", "-out", "text.csr"]);
    let text = std::fs::read_to_string(env.path("text.csr")).unwrap();
    assert!(text.starts_with("Certificate Request:"), "{text}");
    let out = env.sign("text.csr", "acme", "alice", "text.pem");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An intermediate CA is imported with its issuers after it in `--cert`;
/// the bundle then holds the chain and `openssl verify -CAfile bundle`
/// accepts its certificates. Without the issuers, the import is refused
/// (the bundle would verify nowhere that wants a root anchor).
#[test]
fn an_imported_intermediate_bundles_its_chain() {
    if !openssl_available() {
        return;
    }
    let env = Env::new();
    for key in ["root.key", "int.key"] {
        env.p256_key(key);
    }
    env.self_signed_ca("root.key", "/O=Example/CN=Example Root", "root.pem");
    env.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "int.key",
        "-subj",
        "/O=Example/CN=Example Issuing",
        "-out",
        "int.csr",
    ]);
    std::fs::write(
        env.path("ext.cnf"),
        "[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    env.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "int.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-days",
        "20",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "v3",
        "-out",
        "int.pem",
    ]);
    let out = env.eos(&["ca", "import", "--key", "int.key", "--cert", "int.pem"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is issued by") && err.contains("Example Root"),
        "{err}"
    );
    assert!(!env.state().join("ca/ca.key").exists());

    let chain = std::fs::read_to_string(env.path("int.pem")).unwrap()
        + &std::fs::read_to_string(env.path("root.pem")).unwrap();
    std::fs::write(env.path("chain.pem"), chain).unwrap();
    env.ok(&["ca", "import", "--key", "int.key", "--cert", "chain.pem"]);
    let csr = fixture("p256.csr");
    let out = env.sign(csr.to_str().unwrap(), "acme", "alice", "alice.pem");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["ca", "bundle", "--out", "bundle.pem"]);
    let bundle = std::fs::read_to_string(env.path("bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    let v = env.verify(&["-CAfile", "bundle.pem"], "alice.pem");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // The CRL is the intermediate's, and verifies with the chain.
    env.ok(&["ca", "crl", "--out", "crl.pem"]);
    let v = env.verify(
        &["-CAfile", "bundle.pem", "-CRLfile", "crl.pem", "-crl_check"],
        "alice.pem",
    );
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}
