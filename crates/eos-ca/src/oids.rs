//! The object identifiers eos-ca looks at, written out once with their names
//! (RFC 5280, RFC 5480, RFC 4055, RFC 5758, RFC 2986).

use der::asn1::ObjectIdentifier as Oid;

const fn oid(s: &str) -> Oid {
    Oid::new_unwrap(s)
}

pub(crate) const EC_PUBLIC_KEY: Oid = oid("1.2.840.10045.2.1");
pub(crate) const SECP256R1: Oid = oid("1.2.840.10045.3.1.7");
pub(crate) const SECP384R1: Oid = oid("1.3.132.0.34");
pub(crate) const RSA_ENCRYPTION: Oid = oid("1.2.840.113549.1.1.1");

pub(crate) const ECDSA_WITH_SHA256: Oid = oid("1.2.840.10045.4.3.2");
pub(crate) const ECDSA_WITH_SHA384: Oid = oid("1.2.840.10045.4.3.3");
pub(crate) const ECDSA_WITH_SHA512: Oid = oid("1.2.840.10045.4.3.4");
pub(crate) const SHA256_WITH_RSA: Oid = oid("1.2.840.113549.1.1.11");
pub(crate) const SHA384_WITH_RSA: Oid = oid("1.2.840.113549.1.1.12");
pub(crate) const SHA512_WITH_RSA: Oid = oid("1.2.840.113549.1.1.13");

/// Signature algorithms on broken hashes: MD2, MD5, SHA-1 (RSA, ECDSA, DSA).
pub(crate) const WEAK_SIGNATURES: [Oid; 5] = [
    oid("1.2.840.113549.1.1.2"),
    oid("1.2.840.113549.1.1.4"),
    oid("1.2.840.113549.1.1.5"),
    oid("1.2.840.10045.4.1"),
    oid("1.2.840.10040.4.3"),
];

pub(crate) const EXTENSION_REQUEST: Oid = oid("1.2.840.113549.1.9.14");
pub(crate) const BASIC_CONSTRAINTS: Oid = oid("2.5.29.19");
pub(crate) const KEY_USAGE: Oid = oid("2.5.29.15");
pub(crate) const EXT_KEY_USAGE: Oid = oid("2.5.29.37");
pub(crate) const SUBJECT_ALT_NAME: Oid = oid("2.5.29.17");
pub(crate) const SUBJECT_KEY_ID: Oid = oid("2.5.29.14");
pub(crate) const AUTHORITY_KEY_ID: Oid = oid("2.5.29.35");
pub(crate) const CRL_DISTRIBUTION_POINTS: Oid = oid("2.5.29.31");
pub(crate) const CLIENT_AUTH: Oid = oid("1.3.6.1.5.5.7.3.2");

pub(crate) const COMMON_NAME: Oid = oid("2.5.4.3");
pub(crate) const ORGANIZATION: Oid = oid("2.5.4.10");
pub(crate) const ORGANIZATIONAL_UNIT: Oid = oid("2.5.4.11");

const NAMES: &[(Oid, &str)] = &[
    (EC_PUBLIC_KEY, "id-ecPublicKey"),
    (SECP256R1, "P-256"),
    (SECP384R1, "P-384"),
    (oid("1.3.132.0.35"), "P-521"),
    (oid("1.3.132.0.10"), "secp256k1"),
    (RSA_ENCRYPTION, "rsaEncryption"),
    (oid("1.2.840.113549.1.1.10"), "RSASSA-PSS"),
    (oid("1.2.840.10040.4.1"), "DSA"),
    (oid("1.3.101.112"), "Ed25519"),
    (oid("1.3.101.113"), "Ed448"),
    (ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
    (ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
    (ECDSA_WITH_SHA512, "ecdsa-with-SHA512"),
    (SHA256_WITH_RSA, "sha256WithRSAEncryption"),
    (SHA384_WITH_RSA, "sha384WithRSAEncryption"),
    (SHA512_WITH_RSA, "sha512WithRSAEncryption"),
    (oid("1.2.840.113549.1.1.2"), "md2WithRSAEncryption"),
    (oid("1.2.840.113549.1.1.4"), "md5WithRSAEncryption"),
    (oid("1.2.840.113549.1.1.5"), "sha1WithRSAEncryption"),
    (oid("1.2.840.10045.4.1"), "ecdsa-with-SHA1"),
    (oid("1.2.840.10040.4.3"), "dsa-with-SHA1"),
    (oid("2.16.840.1.101.3.4.3.2"), "dsa-with-SHA256"),
    (BASIC_CONSTRAINTS, "basicConstraints"),
    (KEY_USAGE, "keyUsage"),
    (EXT_KEY_USAGE, "extendedKeyUsage"),
    (SUBJECT_ALT_NAME, "subjectAltName"),
    (SUBJECT_KEY_ID, "subjectKeyIdentifier"),
    (AUTHORITY_KEY_ID, "authorityKeyIdentifier"),
    (CRL_DISTRIBUTION_POINTS, "cRLDistributionPoints"),
];

/// A readable name for an OID: `name (dotted)` when known, else dotted.
pub(crate) fn name(o: &Oid) -> String {
    match NAMES.iter().find(|(k, _)| k == o) {
        Some((_, n)) => format!("{n} ({o})"),
        None => o.to_string(),
    }
}
