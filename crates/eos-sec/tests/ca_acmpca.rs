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
    root: LocalCa,
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
        root,
        root_pem,
        st,
    })
}

/// A certificate of the CA in the inventory, for acme/alice: moto's own
/// (recorded here directly: through `ca sign` moto's never passes); its
/// serial. Also records `0badc0de01` as a certificate of the local CA.
fn record_moto_cert(a: &Aws) -> String {
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
    serial
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
    let serial = record_moto_cert(&a);

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

/// Write a CRL of the CA (signed with the key behind moto's CA certificate)
/// where Private CA would write it — moto records the CrlConfiguration but
/// never writes a CRL, so the test plays that part of AWS.
fn write_ca_crl(a: &Aws, signer: &LocalCa, key: &str, number: u64, serials: &[&str]) -> Vec<u8> {
    use der::Encode;
    let revoked: Vec<eos_ca::RevokedEntry> = serials
        .iter()
        .map(|s| eos_ca::RevokedEntry {
            serial: eos_ca::Serial::from_hex(s).unwrap(),
            revoked_at: SystemTime::now(),
            reason: eos_ca::RevocationReason::KeyCompromise,
        })
        .collect();
    let der = signer
        .crl(
            number,
            &revoked,
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .to_der()
        .unwrap();
    let file = a.st.path().join(format!("ca-{number}.crl"));
    std::fs::write(&file, &der).unwrap();
    a.moto
        .boto3(&format!(
            "boto3.client('s3', **kw).put_object(Bucket='ca-crl', Key='{key}', Body=open('{}', 'rb').read())",
            file.display()
        ))
        .unwrap();
    der
}

/// AWS Private CA's own CRL reaches the edge: read from the bucket of the
/// CA's CrlConfiguration, checked against the CA, carried to the `[gate]`
/// bucket byte for byte (PEM-wrapped) — never signed by eos-sec — and a
/// Private CA revocation is queued and delivered by `sync` once the CA's
/// CRL lists it. The edge here is S3 and an API Gateway domain on moto
/// (moto has no ELBv2 trust stores; the trust-store calls the CRL takes
/// from there on are eos-aws's replay tests).
#[test]
fn the_private_ca_crl_is_carried_to_the_edge_as_the_ca_wrote_it() {
    let Some(a) = aws() else {
        return;
    };
    a.moto
        .boto3(
            "c = boto3.client('s3', **kw)\nc.create_bucket(Bucket='trust')\nc.create_bucket(Bucket='ca-crl')",
        )
        .unwrap();
    let bundle_uri = format!(
        "s3://trust/eos-sec/bundle/{}.pem",
        eos_policy::gate::sha256_hex(
            a.st.json(&["ca", "bundle"])["pem"]
                .as_str()
                .unwrap()
                .as_bytes()
        )
    );
    a.moto
        .boto3(&format!(
            "boto3.client('apigatewayv2', **kw).create_domain_name(DomainName='api.acme.example', \
             DomainNameConfigurations=[{{'CertificateArn': 'arn:aws:acm:us-east-1:111122223333:certificate/x', 'EndpointType': 'REGIONAL'}}], \
             MutualTlsAuthentication={{'TruststoreUri': '{bundle_uri}'}})"
        ))
        .unwrap();
    let config = a.st.path().join("eos-sec.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[gate]\nbucket = \"trust\"\n\n[[gate.domains]]\nname = \"api.acme.example\"\n",
    );
    std::fs::write(&config, text).unwrap();

    // CRLs off at the CA: refused, naming what to turn on.
    let o = a.st.run(&["gate", "publish"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("publishes no CRL"), "{}", o.stderr);

    block_on(eos_aws::acmpca::enable_test_crl(
        &a.moto.aws_options(),
        &a.arn,
        "ca-crl",
    ))
    .unwrap();
    let id = a.arn.rsplit('/').next().unwrap();
    let key = format!("crl/{id}.crl");
    // Enabled, but nothing written yet.
    let o = a.st.run(&["gate", "publish"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .contains(&format!("has not written its CRL to s3://ca-crl/{key} yet")),
        "{}",
        o.stderr
    );

    // A CRL in the bucket that another key signed is refused.
    let other =
        LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400), SystemTime::now()).unwrap();
    write_ca_crl(&a, &other, &key, 1_700_000_000_000, &[]);
    let o = a.st.run(&["gate", "publish"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("signature does not verify"),
        "{}",
        o.stderr
    );

    // The CA's own: published as it is.
    let der = write_ca_crl(&a, &a.root, &key, 1_700_000_000_001, &[]);
    let report = a.st.json(&["gate", "publish"]);
    assert_eq!(report["crl"]["number"], 1_700_000_000_001u64, "{report}");
    let crl_key = report["crl"]["object"]["key"].as_str().unwrap().to_owned();
    let published = a
        .moto
        .boto3(&format!(
            "sys.stdout.write(boto3.client('s3', **kw).get_object(Bucket='trust', Key='{crl_key}')['Body'].read().decode())"
        ))
        .unwrap();
    // openssl reads it back to the very DER the CA signed.
    std::fs::write(a.st.path().join("published.pem"), &published).unwrap();
    a.st.openssl(&[
        "crl",
        "-in",
        "published.pem",
        "-outform",
        "DER",
        "-out",
        "published.der",
    ]);
    assert_eq!(
        std::fs::read(a.st.path().join("published.der")).unwrap(),
        der
    );
    let status = a.st.json(&["gate", "status"]);
    assert_eq!(status["wants"]["crl_number"], 1_700_000_000_001u64);

    // A revocation at Private CA is queued in its transaction...
    let serial = record_moto_cert(&a);
    a.st.ok(&["ca", "revoke", &serial, "--reason", "key-compromise"]);
    let status = a.st.json(&["sync", "status"]);
    assert_eq!(
        status["gate"]["pending_crls"],
        serde_json::json!([null]),
        "{status}"
    );
    // ...and stays queued while the CA's CRL does not list it.
    let o = a.st.run(&["sync"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "does not list revoked certificate(s) {serial} yet"
        )),
        "{}",
        o.stderr
    );
    assert_eq!(
        a.st.json(&["sync", "status"])["gate"]["pending_crls"],
        serde_json::json!([null])
    );

    // Private CA writes its next CRL: sync delivers it.
    write_ca_crl(&a, &a.root, &key, 1_700_000_000_002, &[&serial]);
    let o = a.st.ok(&["sync"]);
    assert!(
        o.stdout
            .contains("certificate gate: CRL 1700000000002 on 1 targets (1 queued delivered"),
        "{}",
        o.stdout
    );
    assert_eq!(
        a.st.json(&["sync", "status"])["gate"]["pending_crls"],
        serde_json::json!([])
    );
    let listing = a
        .moto
        .boto3("print(len(boto3.client('s3', **kw).list_objects_v2(Bucket='trust', Prefix='eos-sec/crl/')['Contents']))")
        .unwrap();
    assert_eq!(listing.trim(), "2");
}
