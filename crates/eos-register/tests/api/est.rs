//! EST (RFC 7030) the way the RFC's own examples use it: curl against the
//! live service, `base64 -d | openssl pkcs7 -inform DER -print_certs` on
//! what comes back, CSRs made by `openssl req`.

use std::path::Path;

use eos_codes::Purpose;

use crate::common::{self, Harness, Setup, oracles_required};

/// curl, openssl and base64 on PATH; without them the test is skipped,
/// unless oracles are required.
#[allow(clippy::print_stderr)]
fn tools_present() -> bool {
    let missing: Vec<&str> = ["curl", "openssl", "base64"]
        .into_iter()
        .filter(|t| {
            let ran = std::process::Command::new(t)
                .arg("--version")
                .output()
                .is_ok();
            eos_store::testing::record_oracle(t, ran);
            !ran
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(!oracles_required(), "missing oracles: {missing:?}");
    eprintln!("skipped: {missing:?} not installed");
    false
}

/// What a shell pipeline printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run `script` with bash (`-euo pipefail`) in `dir`, with `vars` in its
/// environment: the RFC's examples are shell pipelines, and so are these.
async fn sh(dir: &Path, script: &str, vars: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(vars.iter().copied())
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An EST answer as curl saw it.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// A refusal: `status`, `text/plain` `<code>: <message>`, the code in
    /// `eos-error`.
    fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}{}", self.headers, self.body);
        assert!(self.body.starts_with(&format!("{code}: ")), "{}", self.body);
        assert_eq!(self.header("eos-error").as_deref(), Some(code));
        let ct = self.header("content-type").unwrap();
        assert!(ct.starts_with("text/plain"), "{ct}");
    }
}

/// The test's working directory: the CA certificate for `--cacert`, a P-256
/// key and its CSR (DER, base64 as RFC 7030 §4.2.1 sends it) made by
/// openssl, asking for a subject and a SAN of its own that must not make it
/// into the certificate.
async fn workdir(h: &Harness) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &h.ca_pem).unwrap();
    let run = sh(
        dir.path(),
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
           -subj /CN=mallory -addext subjectAltName=URI:urn:entityos:space:other:user:mallory \
           -outform DER -out csr.der 2>/dev/null
         base64 csr.der > csr.b64",
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    dir
}

/// `curl` an EST path of the service; `args` are curl's.
async fn curl(h: &Harness, dir: &Path, path: &str, args: &str, vars: &[(&str, &str)]) -> Answer {
    let url = format!("{}{path}", h.url);
    let mut env = vec![("URL", url.as_str())];
    env.extend_from_slice(vars);
    let run = sh(
        dir,
        &format!(
            "curl -v -sS --cacert ca.pem -o body -D headers -w '%{{http_code}}' {args} \"$URL\""
        ),
        &env,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    Answer {
        status: run.stdout.trim().parse().unwrap(),
        headers: std::fs::read_to_string(dir.join("headers")).unwrap(),
        body: std::fs::read_to_string(dir.join("body")).unwrap(),
    }
}

/// simpleenroll with `code` as the Basic password, `csr.b64` as the body.
async fn enroll(h: &Harness, dir: &Path, code: &str) -> Answer {
    curl(
        h,
        dir,
        "/.well-known/est/simpleenroll",
        "-u \"acme:$CODE\" -H 'Content-Type: application/pkcs10' --data-binary @csr.b64",
        &[("CODE", code)],
    )
    .await
}

/// The certificates of a certs-only body, as `openssl pkcs7 -print_certs`
/// prints them (PEM).
async fn print_certs(dir: &Path) -> String {
    let run = sh(
        dir,
        "base64 -d body | openssl pkcs7 -inform DER -print_certs",
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    run.stdout
}

#[tokio::test]
async fn est_cacerts_is_the_ca_as_pkcs7_certs_only() {
    if !tools_present() {
        return;
    }
    let h = Harness::start().await;
    let dir = workdir(&h).await;
    let answer = curl(&h, dir.path(), "/.well-known/est/cacerts", "", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // RFC 7030 §4.1.3.
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/pkcs7-mime")
    );
    assert_eq!(
        answer.header("content-transfer-encoding").as_deref(),
        Some("base64")
    );
    assert!(
        answer.body.lines().all(|l| l.len() <= 76),
        "{}",
        answer.body
    );
    let printed = print_certs(dir.path()).await;
    std::fs::write(dir.path().join("cacerts.pem"), &printed).unwrap();
    // The one certificate in it is the CA's, byte for byte.
    let same = sh(
        dir.path(),
        "test \"$(grep -c 'BEGIN CERTIFICATE' cacerts.pem)\" = 1
         cmp <(openssl x509 -in cacerts.pem -outform DER) <(openssl x509 -in ca.pem -outform DER)",
        &[],
    )
    .await;
    assert!(same.ok, "{}{}", same.stderr, printed);
    h.stop().await;
}

#[tokio::test]
async fn est_simpleenroll_issues_from_the_code_binding_not_the_csr() {
    if !tools_present() {
        return;
    }
    let h = Harness::start().await;
    let dir = workdir(&h).await;
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    // Without credentials: the challenge (RFC 7030 §3.2.3), nothing spent.
    let challenged = curl(
        &h,
        dir.path(),
        "/.well-known/est/simpleenroll",
        "-H 'Content-Type: application/pkcs10' --data-binary @csr.b64",
        &[],
    )
    .await;
    challenged.assert_refused(401, "credentials-required");
    let challenge = challenged.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");

    let answer = enroll(&h, dir.path(), &code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // RFC 7030 §4.2.3.
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/pkcs7-mime; smime-type=certs-only")
    );
    assert_eq!(
        answer.header("content-transfer-encoding").as_deref(),
        Some("base64")
    );
    let printed = print_certs(dir.path()).await;
    std::fs::write(dir.path().join("cert.pem"), &printed).unwrap();
    let check = sh(
        dir.path(),
        "test \"$(grep -c 'BEGIN CERTIFICATE' cert.pem)\" = 1
         openssl verify -CAfile ca.pem cert.pem
         openssl x509 -in cert.pem -noout -subject -ext subjectAltName,extendedKeyUsage
         cmp <(openssl x509 -in cert.pem -noout -pubkey) <(openssl pkey -in key.pem -pubout)",
        &[],
    )
    .await;
    assert!(check.ok, "{}{}", check.stderr, check.stdout);
    // The identity of the code's binding; nothing the CSR asked for.
    assert!(check.stdout.contains("cert.pem: OK"), "{}", check.stdout);
    assert!(
        check
            .stdout
            .contains("URI:urn:entityos:space:acme:user:alice"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("TLS Web Client Authentication"));
    assert!(!check.stdout.contains("mallory"), "{}", check.stdout);
    assert!(!check.stdout.contains("other"), "{}", check.stdout);
    // Recorded and audited as every certificate is.
    let store = h.store();
    let certs = eos_store::certs::list(store.conn(), &Default::default()).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].user, "alice");
    // The code was single-use: spent.
    enroll(&h, dir.path(), &code)
        .await
        .assert_refused(401, "code-rejected");
    h.stop().await;
}

#[tokio::test]
async fn est_refusals_carry_codes_and_spend_nothing() {
    if !tools_present() {
        return;
    }
    let h = Harness::start().await;
    let dir = workdir(&h).await;
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    let path = "/.well-known/est/simpleenroll";
    let with_code = [("CODE", code.as_str())];
    // Another media type than RFC 7030's.
    curl(
        &h,
        dir.path(),
        path,
        "-u \"acme:$CODE\" -H 'Content-Type: application/json' --data-binary @csr.b64",
        &with_code,
    )
    .await
    .assert_refused(415, "unsupported-media-type");
    // Not base64, or nothing.
    std::fs::write(dir.path().join("garbage"), "this is *not* base64\n").unwrap();
    curl(
        &h,
        dir.path(),
        path,
        "-u \"acme:$CODE\" -H 'Content-Type: application/pkcs10' --data-binary @garbage",
        &with_code,
    )
    .await
    .assert_refused(400, "bad-request");
    // Raw DER is not what RFC 7030 sends (base64 always, RFC 8951 §3.2).
    curl(
        &h,
        dir.path(),
        path,
        "-u \"acme:$CODE\" -H 'Content-Type: application/pkcs10' --data-binary @csr.der",
        &with_code,
    )
    .await
    .assert_refused(400, "bad-request");
    // Over max_body_bytes (16 KiB).
    std::fs::write(dir.path().join("big"), "A".repeat(40 * 1024)).unwrap();
    curl(
        &h,
        dir.path(),
        path,
        "-u \"acme:$CODE\" -H 'Content-Type: application/pkcs10' --data-binary @big",
        &with_code,
    )
    .await
    .assert_refused(413, "payload-too-large");
    // Base64 of something that is no CSR: refused by the CA's check after
    // the code was accepted, and the use is not spent.
    std::fs::write(dir.path().join("notcsr"), "bm90IGEgQ1NS\n").unwrap();
    let refused = curl(
        &h,
        dir.path(),
        path,
        "-u \"acme:$CODE\" -H 'Content-Type: application/pkcs10' --data-binary @notcsr",
        &with_code,
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.starts_with("csr-"), "{}", refused.body);
    // None of these spent the code.
    let answer = enroll(&h, dir.path(), &code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    h.stop().await;
}

#[tokio::test]
async fn est_guesses_back_off_as_on_the_api() {
    if !tools_present() {
        return;
    }
    let h = Harness::start_with(Setup::slow_backoff()).await;
    let dir = workdir(&h).await;
    let real = h.issue_for("alice", &[Purpose::RegisterCert]);
    for i in 0..4 {
        enroll(&h, dir.path(), &common::guess(&real, i))
            .await
            .assert_refused(401, "code-rejected");
    }
    // The source backs off: even the real code waits, and nothing is issued.
    let throttled = enroll(&h, dir.path(), &real).await;
    throttled.assert_refused(429, "throttled");
    let wait: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);
    let store = h.store();
    assert!(
        eos_store::certs::list(store.conn(), &Default::default())
            .unwrap()
            .is_empty()
    );
    h.stop().await;
}

/// A certificate of the service's CA for alice, issued 2 h 30 min into a
/// 3 h lifetime (inside the renewal window, the last third), written with
/// its key for curl's `--cert`/`--key`. Returns its serial.
async fn current_certificate(h: &Harness, dir: &Path) -> String {
    let lifetime = std::time::Duration::from_secs(3 * 3600);
    let at = std::time::SystemTime::now() - std::time::Duration::from_secs(9000);
    let (pem, serial, key) = h
        .issued_at("alice", eos_ca::Profile::Browser, lifetime, at)
        .await;
    std::fs::write(dir.join("current.pem"), pem).unwrap();
    std::fs::write(dir.join("current.key"), key.serialize_pem()).unwrap();
    serial
}

/// simplereenroll presenting `current.pem` in the TLS handshake, `csr.b64`
/// as the body.
async fn reenroll(h: &Harness, dir: &Path) -> Answer {
    curl(
        h,
        dir,
        "/.well-known/est/simplereenroll",
        "--cert current.pem --key current.key -H 'Content-Type: application/pkcs10' \
         --data-binary @csr.b64",
        &[],
    )
    .await
}

#[tokio::test]
async fn est_simplereenroll_renews_the_certificate_of_the_handshake() {
    if !tools_present() {
        return;
    }
    let h = Harness::start().await;
    let dir = workdir(&h).await;
    let old = current_certificate(&h, dir.path()).await;
    // A new key (re-key): csr.b64 is for key.pem, made by openssl.
    let answer = reenroll(&h, dir.path()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/pkcs7-mime; smime-type=certs-only")
    );
    let printed = print_certs(dir.path()).await;
    std::fs::write(dir.path().join("cert.pem"), &printed).unwrap();
    let check = sh(
        dir.path(),
        "openssl verify -CAfile ca.pem cert.pem
         openssl x509 -in cert.pem -noout -serial -ext subjectAltName
         cmp <(openssl x509 -in cert.pem -noout -pubkey) <(openssl pkey -in key.pem -pubout)",
        &[],
    )
    .await;
    assert!(check.ok, "{}{}", check.stderr, check.stdout);
    assert!(
        check
            .stdout
            .contains("URI:urn:entityos:space:acme:user:alice"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("mallory"), "{}", check.stdout);
    // The inventory links the new certificate to the one presented, and
    // the renewal is audited as every renewal is.
    let store = h.store();
    let records = eos_store::certs::list(store.conn(), &Default::default()).unwrap();
    let new = records.iter().find(|r| r.serial != old).unwrap();
    assert_eq!(new.renewed_from.as_deref(), Some(old.as_str()));
    assert!(
        store
            .audit_log(100)
            .unwrap()
            .iter()
            .any(|a| a.action == "cert.renewed"),
    );
    // The certificate renewed once cannot fork its line with another key.
    let rekey = sh(
        dir.path(),
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
           -subj /CN=x -outform DER 2>/dev/null | base64 > csr.b64",
        &[],
    )
    .await;
    assert!(rekey.ok, "{}", rekey.stderr);
    reenroll(&h, dir.path())
        .await
        .assert_refused(403, "renewal-superseded");
    h.stop().await;
}

#[tokio::test]
async fn est_simplereenroll_needs_a_certificate_of_this_ca() {
    if !tools_present() {
        return;
    }
    let h = Harness::start().await;
    let dir = workdir(&h).await;
    // No certificate in the handshake: nothing to renew (403: there is no
    // HTTP authentication to challenge for).
    let answer = curl(
        &h,
        dir.path(),
        "/.well-known/est/simplereenroll",
        "-H 'Content-Type: application/pkcs10' --data-binary @csr.b64",
        &[],
    )
    .await;
    answer.assert_refused(403, "renewal-no-certificate");
    assert!(answer.header("www-authenticate").is_none());
    // A security code is no credential for re-enrolment.
    let code = h.issue_for("alice", &[Purpose::RegisterCert]);
    curl(
        &h,
        dir.path(),
        "/.well-known/est/simplereenroll",
        "-u \"acme:$CODE\" -H 'Content-Type: application/pkcs10' --data-binary @csr.b64",
        &[("CODE", code.as_str())],
    )
    .await
    .assert_refused(403, "renewal-no-certificate");
    // Not yet in its window: refused with when to come back.
    let lifetime = std::time::Duration::from_secs(3 * 3600);
    let (pem, _, key) = h
        .issued_at(
            "alice",
            eos_ca::Profile::Browser,
            lifetime,
            std::time::SystemTime::now(),
        )
        .await;
    std::fs::write(dir.path().join("current.pem"), pem).unwrap();
    std::fs::write(dir.path().join("current.key"), key.serialize_pem()).unwrap();
    let early = reenroll(&h, dir.path()).await;
    early.assert_refused(425, "renewal-too-early");
    assert!(early.header("retry-after").is_some());
    // Garbage in the body is refused before anything is looked up.
    current_certificate(&h, dir.path()).await;
    std::fs::write(dir.path().join("csr.b64"), "*garbage*").unwrap();
    reenroll(&h, dir.path())
        .await
        .assert_refused(400, "bad-request");
    h.stop().await;
}
