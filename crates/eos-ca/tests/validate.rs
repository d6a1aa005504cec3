#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One `rejects_*` test per CSR refusal code, plus the accepted key types.
//! Fixtures in examples/data/csr were made with `openssl req` (see the
//! README there); the rest are built here with x509-cert and patched.

use der::asn1::{Any, BitString, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use eos_ca::{CsrError, CsrLimits, IgnoredRequest, KeyKind, validate_csr};
use p256::ecdsa::{DerSignature, SigningKey};
use signature::Signer;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../examples/data/csr/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    let (label, der) = der::pem::decode_vec(pem).unwrap();
    assert_eq!(label, "CERTIFICATE REQUEST");
    der
}

fn check(input: &[u8]) -> Result<eos_ca::ValidatedCsr, CsrError> {
    validate_csr(input, &CsrLimits::default())
}

fn refused(input: &[u8], code: &str) -> CsrError {
    let err = check(input).expect_err("should be refused");
    assert_eq!(err.code(), code, "{err}");
    err
}

fn key() -> SigningKey {
    use p256::elliptic_curve::Generate;
    SigningKey::generate()
}

/// A CSR built in-process and signed by `key`.
fn p256_csr(key: &SigningKey) -> Vec<u8> {
    let subject: Name = "CN=bob,O=acme".parse().unwrap();
    let b = RequestBuilder::new(subject).unwrap();
    b.build::<_, DerSignature>(key).unwrap().to_der().unwrap()
}

/// Sign arbitrary request info (for structures no builder would make).
fn sign_info(info: &CertReqInfo, key: &SigningKey) -> Vec<u8> {
    let info_der = info.to_der().unwrap();
    let sig: DerSignature = key.sign(&info_der);
    CertReq {
        info: info.clone(),
        algorithm: AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
            parameters: None,
        },
        signature: BitString::from_bytes(sig.as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn info_of(der: &[u8]) -> CertReqInfo {
    CertReq::from_der(der).unwrap().info
}

fn extension_request(exts: Vec<Extension>) -> Attribute {
    Attribute {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14"),
        values: vec![Any::encode_from(&exts).unwrap()].try_into().unwrap(),
    }
}

#[test]
fn accepts_openssl_p256_p384_rsa2048_rsa4096() {
    for (file, kind) in [
        ("p256.csr", KeyKind::P256),
        ("p384.csr", KeyKind::P384),
        ("p256-sha384.csr", KeyKind::P256),
        ("rsa2048.csr", KeyKind::Rsa { bits: 2048 }),
        ("rsa4096.csr", KeyKind::Rsa { bits: 4096 }),
    ] {
        let pem = fixture(file);
        let v = check(&pem).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.key_kind(), kind, "{file}");
        // DER is accepted too, and gives the same key.
        let d = check(&der_of(&pem)).unwrap();
        assert_eq!(d.fingerprint(), v.fingerprint());
        assert!(!v.requested_ca());
    }
}

#[test]
fn accepts_a_compressed_p256_point() {
    let k = key();
    let mut info = info_of(&p256_csr(&k));
    let compressed = k.verifying_key().to_sec1_point(true);
    info.public_key.subject_public_key = BitString::from_bytes(compressed.as_bytes()).unwrap();
    let v = check(&sign_info(&info, &k)).unwrap();
    assert_eq!(v.key_kind(), KeyKind::P256);
    // Signed by another key: still refused after widening the point.
    refused(&sign_info(&info, &key()), "csr-bad-signature");
}

/// One key, one identity: the compressed and the uncompressed encodings of
/// a point give the same fingerprint and the same (uncompressed) key, the
/// one the certificate carries.
#[test]
fn both_encodings_of_one_key_are_one_key() {
    let k = key();
    let plain = check(&p256_csr(&k)).unwrap();
    let mut info = info_of(&p256_csr(&k));
    let compressed = k.verifying_key().to_sec1_point(true);
    info.public_key.subject_public_key = BitString::from_bytes(compressed.as_bytes()).unwrap();
    let squeezed = check(&sign_info(&info, &k)).unwrap();
    assert_eq!(squeezed.fingerprint(), plain.fingerprint());
    assert_eq!(squeezed.public_key(), plain.public_key());
    let point = squeezed.public_key().subject_public_key.raw_bytes();
    assert_eq!((point.len(), point.first()), (65, Some(&0x04)));
}

#[test]
fn accepts_in_process_csr_and_notes_the_subject() {
    let v = check(&p256_csr(&key())).unwrap();
    assert_eq!(v.key_kind(), KeyKind::P256);
    assert!(
        v.ignored()
            .iter()
            .any(|i| matches!(i, IgnoredRequest::Subject { .. }))
    );
}

#[test]
fn ca_true_request_is_noted_not_honoured() {
    let v = check(&fixture("ca-request.csr")).unwrap();
    assert!(v.requested_ca());
    assert!(v.ignored().contains(&IgnoredRequest::CaTrue));
    assert!(v.ignored().contains(&IgnoredRequest::CaKeyUsage));
    assert!(
        v.ignored()
            .contains(&IgnoredRequest::SubjectAltName { count: 2 })
    );
}

#[test]
fn rejects_empty() {
    refused(b"", "csr-empty");
}

#[test]
fn rejects_too_large() {
    let mut big = fixture("p256.csr");
    big.resize(CsrLimits::default().max_bytes + 1, b'\n');
    refused(&big, "csr-too-large");
}

/// RFC 7468 §2: text before the PEM block (what `openssl req -text`
/// writes) is ignored; binary bytes before it are not text.
#[test]
fn accepts_explanatory_text_before_the_pem() {
    let mut text =
        b"Certificate Request:\n    Data:\n        Version: 1 (0x0)\n\t(tab)\r\n".to_vec();
    text.extend_from_slice(&fixture("p256.csr"));
    let plain = check(&fixture("p256.csr")).unwrap();
    assert_eq!(check(&text).unwrap().fingerprint(), plain.fingerprint());
    let mut binary = b"\x00\x01".to_vec();
    binary.extend_from_slice(&fixture("p256.csr"));
    refused(&binary, "csr-malformed");
    let mut der_then_pem = der_of(&fixture("p256.csr"));
    der_then_pem.extend_from_slice(&fixture("p256.csr"));
    refused(&der_then_pem, "csr-trailing-bytes");
}

#[test]
fn rejects_bad_pem() {
    refused(
        b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
        "csr-bad-pem",
    );
}

#[test]
fn rejects_wrong_pem_label() {
    let pem = String::from_utf8(fixture("p256.csr"))
        .unwrap()
        .replace("CERTIFICATE REQUEST", "CERTIFICATE");
    refused(pem.as_bytes(), "csr-wrong-pem-label");
}

#[test]
fn rejects_trailing_bytes() {
    let mut der = der_of(&fixture("p256.csr"));
    der.push(0);
    refused(&der, "csr-trailing-bytes");
    let mut pem = fixture("p256.csr");
    pem.extend_from_slice(b"garbage\n");
    refused(&pem, "csr-trailing-bytes");
}

#[test]
fn rejects_malformed_and_ber() {
    refused(b"\x30\x03\x02\x01", "csr-malformed");
    // BER indefinite length on the outer SEQUENCE: `30 82 LL LL` -> `30 80 .. 00 00`.
    let der = der_of(&fixture("rsa2048.csr"));
    assert_eq!(der[..2], [0x30, 0x82]);
    let mut ber = vec![0x30, 0x80];
    ber.extend_from_slice(&der[4..]);
    ber.extend_from_slice(&[0, 0]);
    refused(&ber, "csr-malformed");
    // Non-minimal length: `30 81 LL` written as `30 82 00 LL`.
    let der = der_of(&fixture("p256.csr"));
    assert_eq!(der[..2], [0x30, 0x81]);
    let mut long = vec![0x30, 0x82, 0x00];
    long.extend_from_slice(&der[2..]);
    refused(&long, "csr-malformed");
}

/// Sign request-info bytes as given (for encodings no encoder makes).
fn sign_raw_info(info_der: &[u8], key: &SigningKey) -> Vec<u8> {
    let sig: DerSignature = key.sign(info_der);
    let alg = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
        parameters: None,
    }
    .to_der()
    .unwrap();
    let sig = BitString::from_bytes(sig.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    let mut body = info_der.to_vec();
    body.extend_from_slice(&alg);
    body.extend_from_slice(&sig);
    let mut out = vec![0x30];
    der::Length::try_from(body.len())
        .unwrap()
        .encode_to_vec(&mut out)
        .unwrap();
    out.extend_from_slice(&body);
    out
}

/// Strict DER holds inside the signed part too: an explicit DEFAULT value
/// (`critical FALSE`) and a SET OF out of DER order are BER, refused even
/// with a valid signature over them.
#[test]
fn rejects_ber_inside_the_signed_request_info() {
    let k = key();
    // basicConstraints with `critical FALSE` written out.
    let ext = [
        0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0x00, 0x04, 0x02, 0x30, 0x00,
    ];
    let mut exts = vec![0x30, ext.len() as u8];
    exts.extend_from_slice(&ext);
    let mut info = info_of(&p256_csr(&k));
    info.attributes = vec![Attribute {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14"),
        values: vec![Any::from_der(&exts).unwrap()].try_into().unwrap(),
    }]
    .try_into()
    .unwrap();
    let e = refused(&sign_info(&info, &k), "csr-malformed");
    assert!(e.to_string().contains("DER"), "{e}");

    // Two attributes, swapped after encoding so the SET OF is unsorted.
    let mut info = info_of(&p256_csr(&k));
    let challenge = Attribute {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7"),
        values: vec![Any::encode_from(&der::asn1::Utf8StringRef::new("pw").unwrap()).unwrap()]
            .try_into()
            .unwrap(),
    };
    let name = Attribute {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.2"),
        values: vec![Any::encode_from(&der::asn1::Utf8StringRef::new("nm").unwrap()).unwrap()]
            .try_into()
            .unwrap(),
    };
    let (a, b) = (challenge.to_der().unwrap(), name.to_der().unwrap());
    assert_eq!(a.len(), b.len());
    info.attributes = vec![challenge, name].try_into().unwrap();
    let sorted = info.to_der().unwrap();
    let sign = |der: &[u8]| sign_raw_info(der, &k);
    check(&sign(&sorted)).unwrap();
    let first = sorted
        .windows(a.len())
        .position(|w| w == a || w == b)
        .unwrap();
    let mut unsorted = sorted.clone();
    let (x, y) = sorted[first..first + 2 * a.len()].split_at(a.len());
    unsorted[first..first + a.len()].copy_from_slice(y);
    unsorted[first + a.len()..first + 2 * a.len()].copy_from_slice(x);
    assert_ne!(unsorted, sorted);
    let e = refused(&sign(&unsorted), "csr-malformed");
    assert!(e.to_string().contains("DER"), "{e}");
}

#[test]
fn rejects_bad_version() {
    let mut der = p256_csr(&key());
    // certificationRequestInfo starts at 4 (30 81 LL | 30 LL ..) or so: patch
    // the first `02 01 00`.
    let pos = der.windows(3).position(|w| w == [2, 1, 0]).unwrap();
    der[pos + 2] = 1;
    refused(&der, "csr-bad-version");
}

#[test]
fn rejects_subject_too_large() {
    let k = key();
    let mut info = info_of(&p256_csr(&k));
    let long = "x".repeat(1100);
    info.subject = format!("CN={long}").parse().unwrap();
    refused(&sign_info(&info, &k), "csr-subject-too-large");
}

#[test]
fn rejects_unsupported_key() {
    refused(&fixture("dsa.csr"), "csr-unsupported-key");
    refused(&fixture("ed25519.csr"), "csr-unsupported-key");
}

#[test]
fn rejects_unsupported_curve() {
    let e = refused(&fixture("secp256k1.csr"), "csr-unsupported-curve");
    assert!(e.to_string().contains("secp256k1"), "{e}");
}

#[test]
fn rejects_explicit_curve_params() {
    refused(&fixture("explicit-params.csr"), "csr-explicit-curve-params");
}

#[test]
fn rejects_invalid_key() {
    // Flip the last byte of the uncompressed point (03 42 00 04 X Y): the
    // point is then off the curve.
    let mut der = der_of(&fixture("p256.csr"));
    let pos = der
        .windows(4)
        .position(|w| w == [0x03, 0x42, 0x00, 0x04])
        .unwrap();
    der[pos + 4 + 63] ^= 0x01;
    refused(&der, "csr-invalid-key");
}

#[test]
fn rejects_rsa_key_size() {
    let e = refused(&fixture("rsa1024.csr"), "csr-rsa-key-size");
    assert!(e.to_string().contains("1024"), "{e}");
}

#[test]
fn rejects_rsa_exponent() {
    let e = refused(&fixture("rsa-e3.csr"), "csr-rsa-exponent");
    assert!(e.to_string().contains("is 3;"), "{e}");
}

#[test]
fn rejects_weak_hash() {
    refused(&fixture("sha1.csr"), "csr-weak-hash");
    refused(&fixture("rsa-md5.csr"), "csr-weak-hash");
}

#[test]
fn rejects_unsupported_signature_algorithm() {
    refused(
        &fixture("rsa-pss.csr"),
        "csr-unsupported-signature-algorithm",
    );
}

#[test]
fn rejects_signature_algorithm_mismatch() {
    // A P-256 key claiming an RSA signature algorithm.
    let der = p256_csr(&key());
    let mut req = CertReq::from_der(&der).unwrap();
    req.algorithm = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
        parameters: Some(Any::null()),
    };
    refused(&req.to_der().unwrap(), "csr-signature-algorithm-mismatch");
    // ECDSA with parameters present (RFC 5758 says absent).
    let mut req = CertReq::from_der(&der).unwrap();
    req.algorithm.parameters = Some(Any::null());
    refused(&req.to_der().unwrap(), "csr-signature-algorithm-mismatch");
    // ECDSA takes SHA-256 or SHA-384: SHA-512 (`openssl req -sha512`) is
    // refused although it verifies.
    let e = refused(
        &fixture("p256-sha512.csr"),
        "csr-signature-algorithm-mismatch",
    );
    assert!(e.to_string().contains("SHA512"), "{e}");
}

#[test]
fn rejects_bad_signature() {
    // Signed by another key than the one in the request.
    let k = key();
    let info = info_of(&p256_csr(&k));
    refused(&sign_info(&info, &key()), "csr-bad-signature");
    // A subject changed after signing.
    let mut req = CertReq::from_der(&p256_csr(&k)).unwrap();
    req.info.subject = "CN=mallory,O=acme".parse().unwrap();
    refused(&req.to_der().unwrap(), "csr-bad-signature");
}

fn ext(oid: &str, value: &[u8]) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical: false,
        extn_value: OctetString::new(value).unwrap(),
    }
}

#[test]
fn rejects_duplicate_extension() {
    let k = key();
    let mut info = info_of(&p256_csr(&k));
    let bc = [0x30, 0x00];
    info.attributes = vec![extension_request(vec![
        ext("2.5.29.19", &bc),
        ext("2.5.29.19", &[0x30, 0x03, 0x01, 0x01, 0xff]),
    ])]
    .try_into()
    .unwrap();
    let e = refused(&sign_info(&info, &k), "csr-duplicate-extension");
    assert!(e.to_string().contains("basicConstraints"), "{e}");
}

#[test]
fn rejects_malformed_extension() {
    let k = key();
    let mut info = info_of(&p256_csr(&k));
    info.attributes = vec![extension_request(vec![ext("2.5.29.19", &[0x04, 0x00])])]
        .try_into()
        .unwrap();
    refused(&sign_info(&info, &k), "csr-malformed-extension");
}

#[test]
fn truncation_at_every_byte_never_panics_and_never_passes() {
    for file in ["p256.csr", "rsa2048.csr", "ca-request.csr"] {
        let der = der_of(&fixture(file));
        for n in 0..der.len() {
            assert!(check(&der[..n]).is_err(), "{file} truncated to {n} passed");
        }
        let pem = fixture(file);
        for n in 0..pem.len() - 40 {
            assert!(
                check(&pem[..n]).is_err(),
                "{file} pem truncated to {n} passed"
            );
        }
    }
}

#[test]
fn every_code_is_distinct() {
    let errors = [
        CsrError::Empty,
        CsrError::TooLarge {
            size: Some(0),
            max: 0,
        },
        CsrError::BadPem {
            detail: String::new(),
        },
        CsrError::WrongPemLabel {
            label: String::new(),
        },
        CsrError::TrailingBytes { count: 0 },
        CsrError::Malformed {
            detail: String::new(),
        },
        CsrError::BadVersion { version: 0 },
        CsrError::SubjectTooLarge { size: 0, max: 0 },
        CsrError::UnsupportedKey {
            algorithm: String::new(),
        },
        CsrError::UnsupportedCurve {
            curve: String::new(),
        },
        CsrError::ExplicitCurveParameters,
        CsrError::InvalidKey {
            detail: String::new(),
        },
        CsrError::RsaKeySize { bits: 0 },
        CsrError::RsaExponent {
            exponent: String::new(),
        },
        CsrError::WeakHash {
            algorithm: String::new(),
        },
        CsrError::UnsupportedSignatureAlgorithm {
            algorithm: String::new(),
        },
        CsrError::SignatureAlgorithmMismatch {
            signature: String::new(),
            key: String::new(),
        },
        CsrError::BadSignature,
        CsrError::DuplicateExtension { oid: String::new() },
        CsrError::MalformedExtension {
            oid: String::new(),
            detail: String::new(),
        },
        CsrError::CaKey,
        CsrError::KeyReuse {
            fingerprint: String::new(),
            space: String::new(),
            user: String::new(),
        },
    ];
    let mut codes: Vec<&str> = errors.iter().map(CsrError::code).collect();
    codes.sort_unstable();
    let n = codes.len();
    codes.dedup();
    assert_eq!(codes.len(), n);
}

mod arbitrary_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = check(&bytes);
        }

        #[test]
        fn mutated_csr_never_panics(pos in 0usize..371, byte in any::<u8>()) {
            let mut pem = fixture("p256.csr");
            let mut der = der_of(&pem);
            let i = pos % der.len();
            der[i] = byte;
            let _ = check(&der);
            let j = pos % pem.len();
            pem[j] = byte;
            let _ = check(&pem);
        }
    }
}
