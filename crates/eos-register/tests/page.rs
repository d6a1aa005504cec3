//! The page end to end in headless Chromium: enter a code, get a
//! certificate, download the PKCS#12, then check with openssl that it opens
//! with the password and chains to the CA. Needs chromium, node with the
//! page's npm packages (`npm ci` in crates/eos-register/web) and openssl:
//! missing ones skip loudly locally and fail under CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{Harness, oracles_required};
use eos_codes::Purpose;
use sha2::{Digest, Sha256};

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn chromium() -> PathBuf {
    std::env::var_os("EOS_SEC_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run the browser test, if anything.
fn missing_oracle() -> Option<String> {
    if !chromium().exists() {
        return Some(format!(
            "{} (apt-get install chromium)",
            chromium().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node".to_owned());
    }
    if !web_dir().join("node_modules/playwright-core").exists() {
        return Some("playwright-core (npm ci in crates/eos-register/web)".to_owned());
    }
    if Command::new("openssl").arg("version").output().is_err() {
        return Some("openssl".to_owned());
    }
    None
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the server certificate, for
/// Chromium's --ignore-certificate-errors-spki-list.
fn spki_hash(h: &Harness) -> String {
    use der::{Decode, Encode};
    let cert = eos_ca::Certificate::from_der(h.server_chain[0].as_ref()).unwrap();
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki))
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn page_issues_a_certificate_as_a_pkcs12_that_chains_to_the_ca() {
    let missing = missing_oracle();
    eos_store::testing::record_oracle("chromium", missing.is_none());
    if let Some(missing) = missing {
        if oracles_required() {
            panic!("the browser test needs {missing}, and oracles are required (CI)");
        }
        eprintln!(
            "SKIPPED page test: {missing} is not available; install it to run the browser test"
        );
        return;
    }
    let h = Harness::start().await;
    let cert_code = h.issue_for("alice", &[Purpose::RegisterCert]);
    let ip_code = h.issue_for("bob", &[Purpose::RegisterIp]);
    let out = tempfile::tempdir().unwrap();
    let password = "correct horse battery";
    let script = web_dir().join("e2e.mjs");
    let args = [
        script.display().to_string(),
        format!("{}/", h.url),
        cert_code.clone(),
        password.to_owned(),
        out.path().display().to_string(),
        spki_hash(&h),
        ip_code,
    ];
    let run = tokio::process::Command::new("node")
        .args(&args)
        .current_dir(web_dir())
        .env("EOS_SEC_CHROMIUM", chromium())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "e2e.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("page report: {report}");
    assert_eq!(report["secure"], true, "{report}");
    assert_eq!(
        report["foreign"],
        serde_json::json!([]),
        "no third-party requests: {report}"
    );
    let console = report["console"].to_string();
    assert!(!console.contains("Content Security Policy"), "{console}");
    assert!(
        !console.contains(&cert_code),
        "the page must not log the code"
    );
    assert_eq!(report["filename"], "eos-acme-alice.p12", "{report}");
    // A click after the answer sends nothing: the code is spent and the
    // button stays disabled until the form is edited.
    assert_eq!(report["cert_requests_after_late_click"], 1, "{report}");
    // No client certificate in this browser: nothing to renew is offered.
    assert_eq!(report["renew_shown"], false, "{report}");
    // Each button was double-clicked: one request each, so no second use
    // of a single-use code (a failed attempt) was sent.
    assert_eq!(report["cert_requests"], 1, "{report}");
    assert_eq!(report["ip_requests"], 1, "{report}");
    assert!(
        report["ip_status"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1/32"),
        "{report}"
    );
    // A typo in the code is caught by the page's own check: an error and
    // no request; the right code then registers.
    assert!(
        report["typo_status"].as_str().unwrap().contains("mistyped"),
        "{report}"
    );
    assert_eq!(report["typo_requests"], 0, "{report}");

    // openssl opens the file with the password, and only with it.
    let p12 = report["p12"].as_str().unwrap();
    let pass = format!("pass:{password}");
    let pem = openssl(&["pkcs12", "-in", p12, "-passin", &pass, "-nodes"]);
    assert!(
        pem.contains("PRIVATE KEY") && pem.contains("CERTIFICATE"),
        "{pem}"
    );
    let wrong = Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            p12,
            "-passin",
            "pass:wrong password",
            "-nodes",
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password must not open it");
    let dir = out.path();
    let leaf = dir.join("leaf.pem");
    let key = dir.join("key.pem");
    let ca = dir.join("ca.pem");
    std::fs::write(
        &leaf,
        openssl(&[
            "pkcs12", "-in", p12, "-passin", &pass, "-clcerts", "-nokeys",
        ]),
    )
    .unwrap();
    std::fs::write(
        &key,
        openssl(&["pkcs12", "-in", p12, "-passin", &pass, "-nocerts", "-nodes"]),
    )
    .unwrap();
    std::fs::write(&ca, &h.ca_pem).unwrap();
    // Chains to the CA, as a client certificate.
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        "-purpose",
        "sslclient",
        leaf.to_str().unwrap(),
    ]);
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    // The key in the file is the certificate's key.
    let cert_pub = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-pubkey"]);
    let key_pub = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert_eq!(cert_pub, key_pub);
    // Identity from the code's binding.
    let subject = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-subject"]);
    assert!(
        subject.contains("alice") && subject.contains("acme"),
        "{subject}"
    );
    // The CA chain is in the file too.
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{pem}");
    // The code is spent: the page cannot be replayed.
    let records = eos_store::certs::list(h.store().conn(), &Default::default()).unwrap();
    assert_eq!(records.len(), 1);
    h.stop().await;
}

/// A home for Chromium in which it holds `cert_pem` with `key_pem` (its NSS
/// database, `$HOME/.pki/nssdb`, imported with pk12util) and a profile
/// that selects a certificate of the entityOS CA for `origin` without
/// asking — what Chromium stores when a user ticks "remember this
/// decision" in its certificate picker (the content setting
/// `auto_select_certificate`, the same one the AutoSelectCertificateForUrls
/// policy sets). Returns (HOME, user data dir).
fn browser_with_certificate(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    ca_cn: &str,
    origin: &str,
) -> (PathBuf, PathBuf) {
    let home = dir.join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let pem = dir.join("client.pem");
    std::fs::write(&pem, format!("{cert_pem}{key_pem}")).unwrap();
    let p12 = dir.join("client.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        pem.to_str().unwrap(),
        "-out",
        p12.to_str().unwrap(),
        "-passout",
        "pass:import",
    ]);
    let db = format!("sql:{}", nssdb.display());
    for args in [
        vec!["certutil", "-N", "-d", &db, "--empty-password"],
        vec![
            "pk12util",
            "-i",
            p12.to_str().unwrap(),
            "-d",
            &db,
            "-W",
            "import",
        ],
    ] {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let profile = dir.join("profile");
    std::fs::create_dir_all(profile.join("Default")).unwrap();
    let preferences = serde_json::json!({"profile": {"content_settings": {"exceptions": {
        "auto_select_certificate": {
            format!("{origin},*"): {"setting": {"filters": [{"ISSUER": {"CN": ca_cn}}]}}
        }
    }}}});
    std::fs::write(profile.join("Default/Preferences"), preferences.to_string()).unwrap();
    (home, profile)
}

#[tokio::test(flavor = "multi_thread")]
async fn page_renews_the_certificate_the_browser_presents() {
    let missing = missing_oracle().or_else(|| {
        Command::new("pk12util")
            .arg("-h")
            .output()
            .is_err()
            .then(|| "pk12util (apt-get install libnss3-tools)".to_owned())
    });
    eos_store::testing::record_oracle("chromium", missing.is_none());
    if let Some(missing) = missing {
        if oracles_required() {
            panic!("the browser renewal test needs {missing}, and oracles are required (CI)");
        }
        eprintln!("SKIPPED page renewal test: {missing} is not available");
        return;
    }
    let h = Harness::start().await;
    // Issued 2 h 30 min into a 3 h lifetime: inside the renewal window (the
    // last third).
    let lifetime = std::time::Duration::from_secs(3 * 3600);
    let at = std::time::SystemTime::now() - std::time::Duration::from_secs(9000);
    let (cert_pem, serial, key) = h
        .issued_at("alice", eos_ca::Profile::Browser, lifetime, at)
        .await;
    let out = tempfile::tempdir().unwrap();
    let ca_cn = openssl_stdin(
        &["x509", "-noout", "-subject", "-nameopt", "multiline"],
        &h.ca_pem,
    )
    .lines()
    .find_map(|l| {
        l.trim()
            .strip_prefix("commonName")
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
    })
    .unwrap();
    let (home, profile) =
        browser_with_certificate(out.path(), &cert_pem, &key.serialize_pem(), &ca_cn, &h.url);
    let password = "renewed horse battery";
    let run = tokio::process::Command::new("node")
        .args([
            web_dir().join("e2e.mjs").display().to_string(),
            "renew".to_owned(),
            format!("{}/", h.url),
            password.to_owned(),
            out.path().display().to_string(),
            spki_hash(&h),
            profile.display().to_string(),
        ])
        .current_dir(web_dir())
        .env("HOME", &home)
        .env("EOS_SEC_CHROMIUM", chromium())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "e2e.mjs renew failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("page report: {report}");
    assert_eq!(report["foreign"], serde_json::json!([]), "{report}");
    // The page saw the browser's certificate: whose, and until when.
    assert_eq!(report["renew_shown"], true, "{report}");
    let info = report["renew_info"].as_str().unwrap();
    assert!(
        info.contains(&serial) && info.contains("alice") && info.contains("acme"),
        "{info}"
    );
    // One request for a double click, and a new certificate.
    assert_eq!(report["renew_requests"], 1, "{report}");
    assert_eq!(report["filename"], "eos-acme-alice.p12", "{report}");
    let p12 = report["p12"].as_str().unwrap();
    let pass = format!("pass:{password}");
    let leaf = out.path().join("renewed.pem");
    let new_key = out.path().join("renewed-key.pem");
    std::fs::write(
        &leaf,
        openssl(&[
            "pkcs12", "-in", p12, "-passin", &pass, "-clcerts", "-nokeys",
        ]),
    )
    .unwrap();
    std::fs::write(
        &new_key,
        openssl(&["pkcs12", "-in", p12, "-passin", &pass, "-nocerts", "-nodes"]),
    )
    .unwrap();
    let ca = out.path().join("ca.pem");
    std::fs::write(&ca, &h.ca_pem).unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        "-purpose",
        "sslclient",
        leaf.to_str().unwrap(),
    ]);
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    // A new key, made in the browser, and it is the certificate's.
    let cert_pub = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-pubkey"]);
    let key_pub = openssl(&["pkey", "-in", new_key.to_str().unwrap(), "-pubout"]);
    assert_eq!(cert_pub, key_pub);
    assert_ne!(
        cert_pub,
        openssl_stdin(&["pkey", "-pubout"], &key.serialize_pem())
    );
    // The same identity, a new serial, linked to the one presented.
    let subject = openssl(&[
        "x509",
        "-in",
        leaf.to_str().unwrap(),
        "-noout",
        "-subject",
        "-serial",
    ]);
    assert!(
        subject.contains("alice") && subject.contains("acme"),
        "{subject}"
    );
    let store = h.store();
    let records = eos_store::certs::list(store.conn(), &Default::default()).unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let renewed = records.iter().find(|r| r.serial != serial).unwrap();
    assert_eq!(renewed.renewed_from.as_deref(), Some(serial.as_str()));
    h.stop().await;
}

fn openssl_stdin(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
