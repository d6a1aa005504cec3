//! The renew agent (`eos_register::agent`) against the real service over
//! TLS on loopback: it verifies the service with the given CA, presents the
//! certificate, and replaces the files atomically (the key 0600); each
//! result is checked with openssl.

use std::time::{Duration, SystemTime};

use eos_ca::Profile;
use eos_register::agent::{AgentError, AgentOptions, Files, renew_once};

use crate::common::Harness;
use crate::renew::{key_pubkey, openssl};

const DAY: Duration = Duration::from_secs(86400);

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_agent_renews_its_files_with_the_same_key_or_a_new_one() {
    let h = Harness::start().await;
    let (old, old_serial, key) = h
        .issued_at(
            "alice",
            Profile::Service,
            DAY,
            SystemTime::now() - Duration::from_secs(20 * 3600),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &h.ca_pem).unwrap();
    let files = Files {
        cert: dir.path().join("alice.pem"),
        key: dir.path().join("alice.key"),
    };
    std::fs::write(&files.cert, &old).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let opts = AgentOptions::new(h.url.clone(), Some(h.ca_pem.clone()));
    let (ca, cert, keyf) = (
        ca.to_str().unwrap(),
        files.cert.to_str().unwrap(),
        files.key.to_str().unwrap(),
    );
    let pubkey = |p: &str| openssl(&["pkey", "-pubout", "-in", p], None);
    let cert_pubkey = |p: &str| openssl(&["x509", "-noout", "-pubkey", "-in", p], None);
    let check = |want_key: &str| {
        let ok = openssl(
            &["verify", "-CAfile", ca, "-purpose", "sslclient", cert],
            None,
        );
        assert!(ok.contains(": OK"), "{ok}");
        let t = openssl(&["x509", "-noout", "-text", "-in", cert], None);
        assert!(t.contains("URI:urn:entityos:space:acme:user:alice"), "{t}");
        assert_eq!(cert_pubkey(cert), want_key);
    };

    // Same key.
    let before = pubkey(keyf);
    let r = renew_once(&opts, &files, false).await.unwrap();
    assert_eq!(r.renewed, old_serial);
    assert!(!r.rekeyed);
    assert_ne!(std::fs::read_to_string(&files.cert).unwrap(), old);
    check(&before);
    assert_eq!(pubkey(keyf), before);
    // The successor is not in its window yet: the refusal's code and when
    // to come back; nothing is replaced.
    let current = std::fs::read_to_string(&files.cert).unwrap();
    match renew_once(&opts, &files, false).await {
        Err(e @ AgentError::Refused { .. }) => {
            assert!(e.is_retryable());
            let AgentError::Refused {
                code, retry_after, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(code, "renewal-too-early");
            assert!(retry_after.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), current);

    // A new key, from a certificate in its window.
    let (bob, _, bob_key) = h
        .issued_at(
            "alice",
            Profile::Device,
            DAY,
            SystemTime::now() - Duration::from_secs(20 * 3600),
        )
        .await;
    std::fs::write(&files.cert, &bob).unwrap();
    std::fs::write(&files.key, bob_key.serialize_pem()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let p = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&files.key, p).unwrap();
    }
    let r = renew_once(&opts, &files, true).await.unwrap();
    assert!(r.rekeyed);
    // The new key is written 0600 (the old file was 0644).
    assert_eq!(mode(&files.key), 0o600);
    let new_key = pubkey(keyf);
    assert_ne!(new_key, key_pubkey(&bob_key));
    check(&new_key);

    // A server the given CA did not sign is refused (no skip-verify).
    let other = eos_ca::LocalCa::generate(
        eos_ca::CaEnv::Dev,
        DAY,
        SystemTime::now() - Duration::from_secs(60),
    )
    .unwrap();
    let wrong = AgentOptions::new(h.url.clone(), Some(other.certificate_pem().unwrap()));
    let e = renew_once(&wrong, &files, false).await.unwrap_err();
    assert!(matches!(e, AgentError::Transport(_)), "{e}");
    h.stop().await;
}
