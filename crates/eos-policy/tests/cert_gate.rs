//! The certificate gate against certificates and CRLs made by `openssl`
//! (the oracle): valid, revoked, wrong space, foreign CA, expired CRL
//! coverage; and the `either` decision that uses it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use eos_identity::{SpaceId, UserId};
use eos_ipset::IpSet;
use eos_policy::{
    CertStatus, Evaluator, Layer, Policy, Request, Stage, TrustConfig, UnixTime, Verdict,
    read_chain,
};

fn oracles_required() -> bool {
    std::env::var_os("EOS_SEC_REQUIRE_ORACLES").is_some_and(|v| !v.is_empty() && v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Record the oracle for `cargo xtask ci`'s report: a line `NAME
/// ran|skipped` appended to `EOS_SEC_ORACLE_LOG` (the protocol of
/// `eos_store::testing::record_oracle`; a domain crate's tests do not
/// depend on the store).
fn record_oracle(name: &str, ran: bool) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("EOS_SEC_ORACLE_LOG") else {
        return;
    };
    let line = format!("{name} {}\n", if ran { "ran" } else { "skipped" });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn have_openssl() -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok();
    record_oracle("openssl", ok);
    if !ok {
        assert!(
            !oracles_required(),
            "openssl is required (EOS_SEC_REQUIRE_ORACLES/CI set)"
        );
        eprintln!("\n*** SKIPPING: openssl not available ***\n");
    }
    ok
}

fn ossl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Ca {
    dir: PathBuf,
    name: &'static str,
}

impl Ca {
    fn new(dir: &Path, name: &'static str) -> Ca {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("crlnumber"), "01\n").unwrap();
        std::fs::write(
            d.join("ca.cnf"),
            "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
             default_md = sha256\ndefault_crl_days = 7\ncertificate = ca.pem\nprivate_key = ca.key\n\
             [crl_ext]\nauthorityKeyIdentifier = keyid:always\n",
        )
        .unwrap();
        ossl(
            &d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca { dir: d, name }
    }

    fn issue(&self, file: &str, uri: &str) -> PathBuf {
        let d = &self.dir;
        std::fs::write(
            d.join(format!("{file}.ext")),
            format!(
                "subjectAltName=URI:{uri}\nextendedKeyUsage=clientAuth\n\
                 keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"
            ),
        )
        .unwrap();
        ossl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.csr"),
                "-subj",
                &format!("/CN={file}"),
            ],
        );
        ossl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{file}.pem"),
                "-days",
                "5",
                "-extfile",
                &format!("{file}.ext"),
            ],
        );
        d.join(format!("{file}.pem"))
    }

    fn revoke(&self, cert: &Path) {
        ossl(
            &self.dir,
            &["ca", "-config", "ca.cnf", "-revoke", cert.to_str().unwrap()],
        );
    }

    fn crl(&self) -> PathBuf {
        ossl(
            &self.dir,
            &[
                "ca", "-config", "ca.cnf", "-gencrl", "-crlexts", "crl_ext", "-out", "ca.crl",
            ],
        );
        self.dir.join("ca.crl")
    }

    fn trust(&self) -> TrustConfig {
        let bundle = self.dir.join("ca.pem");
        let crl = self.crl();
        TrustConfig::new(
            (&bundle, &std::fs::read(&bundle).unwrap()),
            &[(crl.clone(), std::fs::read(&crl).unwrap())],
        )
        .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

fn space(s: &str) -> SpaceId {
    SpaceId::new(s).unwrap()
}

#[test]
fn chain_verification_against_openssl_ca_and_crl() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "eos-test-ca");
    // The URI exactly as the entityOS CA writes it (eos-identity's format).
    let alice_uri = eos_identity::account_uri(&space("acme"), &UserId::new("alice").unwrap());
    let alice = ca.issue("alice", &alice_uri);
    let corp = ca.issue("corp", "urn:entityos:space:acme-corp:user:bob");
    let mallory = ca.issue("mallory", "urn:entityos:space:acme:user:mallory");
    ca.revoke(&mallory);
    let trust = ca.trust();
    let other = Ca::new(tmp.path(), "other-ca");
    let eve = other.issue("eve", "urn:entityos:space:acme:user:eve");
    // The old, never-issued prefix binds nothing.
    let legacy = ca.issue("legacy", "urn:eos:space:acme:user:legacy");

    let now = UnixTime::now();
    let acme = space("acme");
    let status = |p: &Path, s: &SpaceId| trust.verify(&read_chain(p).unwrap(), s, now);

    assert_eq!(
        status(&alice, &acme),
        CertStatus::Valid {
            uri: alice_uri.clone()
        }
    );
    // Signed by the CA but for another space.
    let s = status(&alice, &space("globex"));
    assert!(
        matches!(&s, CertStatus::Invalid { reason } if reason.contains("not bound")),
        "{s:?}"
    );
    // `acme` must not accept a certificate for `acme-corp`.
    let s = status(&corp, &acme);
    assert!(
        matches!(&s, CertStatus::Invalid { reason } if reason.contains("not bound")),
        "{s:?}"
    );
    let s = status(&legacy, &acme);
    assert!(
        matches!(&s, CertStatus::Invalid { reason } if reason.contains("not bound")),
        "{s:?}"
    );
    let s = status(&mallory, &acme);
    assert_eq!(
        s,
        CertStatus::Invalid {
            reason: "certificate revoked".to_owned()
        }
    );
    let s = status(&eve, &acme);
    assert_eq!(
        s,
        CertStatus::Invalid {
            reason: "issuer is not the entityOS CA".to_owned()
        }
    );
    // A CRL from another CA does not vouch for this one's certificates.
    let other_trust = TrustConfig::new(
        (
            &ca.dir.join("ca.pem"),
            &std::fs::read(ca.dir.join("ca.pem")).unwrap(),
        ),
        &[(
            other.crl(),
            std::fs::read(other.dir.join("ca.crl")).unwrap(),
        )],
    )
    .unwrap();
    let s = other_trust.verify(&read_chain(&alice).unwrap(), &acme, now);
    assert!(
        matches!(&s, CertStatus::Invalid { reason } if reason.contains("revocation status unknown")),
        "{s:?}"
    );
}

#[test]
fn rejects_trust_without_crl() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "eos-test-ca");
    let bundle = ca.dir.join("ca.pem");
    let err = TrustConfig::new((&bundle, &std::fs::read(&bundle).unwrap()), &[]).unwrap_err();
    assert!(err.to_string().contains("no CRL configured"), "{err}");
    // The bundle is named as the bundle, not as a CRL.
    assert!(err.to_string().starts_with("CA bundle "), "{err}");
}

/// A CRL that does not parse is named as the CRL, with a reason a person
/// reads, not a decoder's Debug text.
#[test]
fn an_unreadable_crl_is_named_and_explained() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "eos-test-ca");
    let bundle = ca.dir.join("ca.pem");
    let crl = ca.crl();
    ossl(
        &ca.dir,
        &["crl", "-in", "ca.crl", "-outform", "DER", "-out", "ca.der"],
    );
    let mut der = std::fs::read(ca.dir.join("ca.der")).unwrap();
    der.extend_from_slice(&[0x05, 0x00]);
    let err = TrustConfig::new(
        (&bundle, &std::fs::read(&bundle).unwrap()),
        &[(crl.with_extension("der"), der)],
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("CRL "), "{err}");
    assert!(err.contains("ca.der"), "{err}");
    assert!(!err.contains("TrailingData"), "{err}");
    assert!(err.contains("data after the CRL"), "{err}");
}

#[test]
fn either_mode_allows_certificate_or_address() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "eos-test-ca");
    let hank = ca.issue("hank", "urn:entityos:space:globex:user:hank");
    let policy = Policy::from_toml(
        r#"
[web_acl]
name = "t"
[routing]
by = "host-label"
domain = "entityos.cloud"
[spaces.globex]
mode = "either"
stage = "enforce"
[spaces.acme]
mode = "both"
stage = "enforce"
"#,
        "t.toml",
    )
    .unwrap();
    let mut sets = BTreeMap::new();
    sets.insert(
        "eos-globex-v4".to_owned(),
        IpSet::from_nets(["198.51.100.0/24".parse().unwrap()]),
    );
    sets.insert(
        "eos-acme-v4".to_owned(),
        IpSet::from_nets(["198.51.100.0/24".parse().unwrap()]),
    );
    let ev = Evaluator::new(&policy, &BTreeMap::new(), &sets, Some(ca.trust())).unwrap();
    let chain = read_chain(&hank).unwrap();
    let now = UnixTime::now();
    let globex = space("globex");
    let req = |ip: &str| Request::to_space(&policy.routing, &globex, ip.parse().unwrap());

    // Certificate from anywhere: allowed.
    let d = ev.evaluate(&req("203.0.113.5"), Some(&chain), now);
    assert_eq!(d.now.verdict, Verdict::Allow, "{d:?}");
    // Office network, no certificate: allowed.
    let d = ev.evaluate(&req("198.51.100.7"), None, now);
    assert_eq!(d.now.verdict, Verdict::Allow, "{d:?}");
    // Neither: the application refuses.
    let d = ev.evaluate(&req("203.0.113.5"), None, now);
    assert_eq!(
        (d.now.verdict, d.now.layer, d.now.rule.as_str()),
        (Verdict::Block, Layer::Application, "either")
    );

    // Mode both: the listener refuses without a certificate even inside
    // the set; with hank's globex certificate too (not bound to acme).
    let acme = space("acme");
    let r = Request::to_space(&policy.routing, &acme, "198.51.100.7".parse().unwrap());
    let d = ev.evaluate(&r, None, now);
    assert_eq!(
        (d.now.verdict, d.now.layer),
        (Verdict::Block, Layer::Listener)
    );
    let d = ev.evaluate(&r, Some(&chain), now);
    assert_eq!(
        (d.now.verdict, d.now.layer),
        (Verdict::Block, Layer::Listener)
    );
    let _ = Stage::Enforce;
}
