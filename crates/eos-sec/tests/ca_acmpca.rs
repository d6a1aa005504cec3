//! `eos-sec ca ...` with `[ca] backend = "acmpca"`, against a private moto
//! server on 127.0.0.1.
//!
//! moto ignores the API-passthrough template: it copies the CSR's subject
//! and signs for 365 days. So `ca sign` through moto must end in a refusal
//! by `check_issued` (exit 1, nothing recorded, `ca.sign-failed` audited) —
//! a certificate that breaks the plan is never recorded, whoever signed it.
//! Revoke and bundle run end to end; what the local CA alone does (`init`,
//! `import`, `crl`) is refused with exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{PEPPER, Serving, State, example};
use eos_aws::acmpca::{IssueWait, PrivateCa, create_test_ca};
use eos_aws::moto::{MotoServer, block_on};
use eos_ca::{CaEnv, LocalCa};

struct Aws {
    moto: MotoServer,
    arn: String,
    root_pem: String,
    st: State,
}

/// moto with an ACTIVE CA whose certificate is a fresh entityOS dev root,
/// and a state directory configured for it.
fn aws() -> Option<Aws> {
    let moto = MotoServer::start()?;
    let root = LocalCa::generate(
        CaEnv::Dev,
        Duration::from_secs(3650 * 86400),
        SystemTime::now(),
    )
    .unwrap();
    let root_pem = root.certificate_pem().unwrap();
    let arn = block_on(create_test_ca(
        &moto.aws_options(),
        ("entityOS", "dev", "entityOS dev Root CA"),
        "EC_prime256v1",
        Some(&root_pem),
    ))
    .unwrap();
    let mut st = State::new(&format!(
        "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[ca]\nbackend = \"acmpca\"\ncertificate_authority_arn = \"{arn}\"\nissue_wait = \"10s\"\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    Some(Aws {
        moto,
        arn,
        root_pem,
        st,
    })
}

fn audit_actions(st: &State) -> Vec<(String, serde_json::Value)> {
    let store = eos_store::Store::open(&st.path().join("state")).unwrap();
    store
        .audit_log(100)
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.detail))
        .collect()
}

#[test]
fn local_only_commands_are_refused_with_exit_2() {
    let Some(a) = aws() else {
        return;
    };
    let o = a.st.run(&["ca", "init", "--env", "dev"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("the CA lives in AWS Private CA"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains(&a.arn), "{}", o.stderr);
    let o =
        a.st.run(&["ca", "import", "--key", "k.pem", "--cert", "c.pem"]);
    assert_eq!(o.code, 2, "{o:?}");
    let o = a.st.run(&["ca", "crl"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("publishes its own CRL") && o.stderr.contains("CrlConfiguration"),
        "{}",
        o.stderr
    );
    assert!(!a.st.path().join("state/ca").exists());
}

#[test]
fn missing_arn_names_the_config_key() {
    let st = State::new("[ca]\nbackend = \"acmpca\"\n");
    for args in [
        vec!["ca", "bundle"],
        vec![
            "ca",
            "sign",
            "--csr",
            "x.csr",
            "--space",
            "acme",
            "--user",
            "alice",
            "--profile",
            "cli",
        ],
        vec!["ca", "crl"],
    ] {
        let o = st.run(&args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(
            o.stderr.contains("[ca] certificate_authority_arn"),
            "{args:?}: {}",
            o.stderr
        );
    }
    // An ARN AWS would refuse is refused before any call.
    let st = State::new(
        "[ca]\nbackend = \"acmpca\"\ncertificate_authority_arn = \"arn:aws:acm-pca:eu-west-1:123:ca\"\n",
    );
    let o = st.run(&["ca", "bundle"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("is not a valid ARN"), "{}", o.stderr);
}

#[test]
fn bundle_is_the_private_ca_certificate() {
    let Some(a) = aws() else {
        return;
    };
    let o = a.st.ok(&["ca", "bundle", "--out", "bundle.pem"]);
    assert_eq!(o.stdout.trim(), a.root_pem.trim());
    let written = std::fs::read_to_string(a.st.path().join("bundle.pem")).unwrap();
    assert_eq!(written.trim(), a.root_pem.trim());
    let v = a.st.json(&["ca", "bundle"]);
    assert_eq!(v["subject"], "CN=entityOS dev Root CA,OU=dev,O=entityOS");
}

#[test]
fn sign_through_moto_is_refused_by_the_plan_check_and_nothing_is_recorded() {
    let Some(a) = aws() else {
        return;
    };
    // The fixture's subject is CN=alice, O=acme (CSR order); moto copies it
    // instead of the planned O=acme, CN=alice, so check_issued refuses.
    let csr = example("csr/p256.csr");
    let o = a.st.run(&[
        "ca",
        "sign",
        "--csr",
        &csr,
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
        "--out",
        "alice.pem",
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains(&format!("not issued by {}", a.arn)),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("[cert-policy-violation]") && o.stderr.contains("subject"),
        "{}",
        o.stderr
    );
    // Private CA keeps what it signed: the certificate was revoked there
    // (RevokeCertificate against the moto server), and the error says so.
    assert!(
        o.stderr.contains("which breaks its plan")
            && o.stderr
                .contains("revoked at the CA (cessation-of-operation)"),
        "{}",
        o.stderr
    );
    assert!(!a.st.path().join("alice.pem").exists());
    let list = a.st.json(&["ca", "list"]);
    assert_eq!(list, serde_json::json!([]));
    let actions = audit_actions(&a.st);
    let failed: Vec<_> = actions
        .iter()
        .filter(|(action, _)| action == "ca.sign-failed")
        .collect();
    assert_eq!(failed.len(), 1, "{actions:?}");
    let error = failed[0].1["error"].as_str().unwrap();
    assert!(
        error.starts_with("the CA signed certificate ")
            && error.ends_with("; revoked at the CA (cessation-of-operation)"),
        "{error}"
    );
    assert!(!actions.iter().any(|(action, _)| action == "ca.sign"));
    // A refused CSR never reaches IssueCertificate, as with the local CA.
    let o = a.st.run(&[
        "ca",
        "sign",
        "--csr",
        &example("csr/sha1.csr"),
        "--space",
        "acme",
        "--user",
        "alice",
        "--profile",
        "cli",
    ]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("csr-weak-hash"), "{}", o.stderr);
}

#[test]
fn revoke_goes_to_private_ca_and_the_inventory() {
    let Some(a) = aws() else {
        return;
    };
    // A certificate of this CA in the inventory (moto's own certificate,
    // recorded here directly: through `ca sign` moto's never passes).
    let ca = block_on(PrivateCa::connect(
        &a.moto.aws_options(),
        &a.arn,
        IssueWait::default(),
    ))
    .unwrap();
    let csr = eos_ca::validate_csr(
        &std::fs::read(example("csr/p256.csr")).unwrap(),
        &eos_ca::CsrLimits::default(),
    )
    .unwrap();
    let account = eos_ca::Account {
        space: eos_identity::SpaceId::new("acme").unwrap(),
        user: eos_identity::UserId::new("alice").unwrap(),
    };
    let plan = eos_ca::plan_certificate(
        ca.info(),
        &eos_ca::IssueRequest {
            csr: &csr,
            account: &account,
            profile: eos_ca::Profile::Cli,
            lifetime: None,
        },
        &eos_ca::IssuancePolicy::default(),
        None,
        SystemTime::now(),
    )
    .unwrap();
    let cert = block_on(ca.issue_certificate(&plan, &csr)).unwrap();
    let serial = eos_ca::serial_of(&cert).to_string();
    let pem = eos_ca::certificate_pem(&cert).unwrap();
    let mut store = eos_store::Store::open(&a.st.path().join("state")).unwrap();
    let tx = store.transaction().unwrap();
    for (serial, signer) in [(serial.as_str(), a.arn.as_str()), ("0badc0de01", "local")] {
        eos_store::certs::record_issued(
            &tx,
            &eos_store::certs::NewCert {
                serial,
                space: "acme",
                user: "alice",
                profile: "cli",
                key_fingerprint: "sha256:00",
                not_before: "2026-01-01T00:00:00Z",
                not_after: "2099-01-01T00:00:00Z",
                signer,
                pem: &pem,
                renewed_from: None,
            },
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(store);

    let v =
        a.st.json(&["ca", "revoke", &serial, "--reason", "key-compromise"]);
    assert_eq!(v["status"], "revoked", "{v}");
    assert_eq!(v["crl"], serde_json::Value::Null);
    assert_eq!(v["certificate"]["signer"], a.arn.as_str());
    let revoked = a.st.json(&["ca", "list", "--status", "revoked"]);
    assert_eq!(revoked[0]["serial"], serial.as_str());
    assert_eq!(revoked[0]["revocation_reason"], "key-compromise");
    let entry = audit_actions(&a.st)
        .into_iter()
        .find(|(action, _)| action == "ca.revoke")
        .unwrap();
    assert_eq!(entry.1["aws"], "revoked", "{:?}", entry.1);
    // Again: nothing changes.
    let o = a.st.ok(&["ca", "revoke", &serial]);
    assert!(o.stdout.contains("was already revoked"), "{}", o.stdout);
    // A certificate of the local CA is not Private CA's to revoke.
    let o = a.st.run(&["ca", "revoke", "0badc0de01"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("was issued by local"), "{}", o.stderr);
    // Unknown serial.
    let o = a.st.run(&["ca", "revoke", "abcdef"]);
    assert_eq!(o.code, 2, "{o:?}");
}

/// `eos-sec serve` with `[ca] backend = "acmpca"` issues through Private CA
/// (the AWS calls run with the state store free, between the transaction
/// that spends the code and the one that records): moto's certificate
/// breaks the plan, so `/v1/cert` answers 500, nothing is recorded, and the
/// code's use is given back (audited `code.use-returned`).
#[test]
fn serve_issues_through_private_ca_never_records_what_breaks_the_plan_and_revokes_it() {
    let Some(mut a) = aws() else {
        return;
    };
    a.st.env.push(("EOS_SEC_PEPPER", PEPPER.to_owned()));
    // moto's CAs are in SHORT_LIVED_CERTIFICATE mode: the default browser
    // profile (30d) would be refused before the call; cli (72h) is sent.
    let config = a.st.path().join("eos-sec.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[serve]\ncert_profile = \"cli\"\n");
    std::fs::write(&config, text).unwrap();
    let code = a.st.ok(&[
        "code",
        "issue",
        "--space",
        "acme",
        "--user",
        "alice",
        "--purpose",
        "register-cert",
    ]);
    let code = code.stdout.trim().to_owned();
    let serving = Serving::start(a.st.command());
    let csr = std::fs::read_to_string(example("csr/p256.csr")).unwrap();
    let body = serde_json::json!({"code": code, "csr": csr}).to_string();
    for _ in 0..2 {
        // Twice: the first attempt did not spend the code.
        let answer = serving.post_json("/v1/cert", &body);
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(!answer.contains("code-rejected"), "{answer}");
    }
    let (_, logs) = serving.stop();
    assert!(logs.contains(&a.arn), "the signer is logged: {logs}");
    assert!(
        logs.contains("certificate policy violation: subject"),
        "{logs}"
    );
    assert!(!logs.contains(&code), "the code reached the logs");
    assert_eq!(a.st.json(&["ca", "list"]), serde_json::json!([]));
    let returned: Vec<_> = audit_actions(&a.st)
        .into_iter()
        .filter(|(action, _)| action == "code.use-returned")
        .collect();
    assert_eq!(returned.len(), 2, "{returned:?}");
    // Private CA keeps what it signed: each certificate that broke the plan
    // was revoked there (RevokeCertificate against the moto server), and
    // the audit entry names it.
    let mut serials = Vec::new();
    for (_, detail) in &returned {
        let reason = detail["reason"].as_str().unwrap();
        let serial = reason
            .strip_prefix("certificate ")
            .and_then(|r| {
                r.strip_suffix(
                    " signed, broke its plan; revoked at the CA (cessation-of-operation)",
                )
            })
            .unwrap_or_else(|| panic!("{reason}"));
        assert!(serial.bytes().all(|b| b.is_ascii_hexdigit()), "{reason}");
        serials.push(serial.to_owned());
    }
    assert_ne!(serials[0], serials[1]);
    assert!(logs.contains("which breaks its plan"), "{logs}");
}
