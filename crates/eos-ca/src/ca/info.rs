//! What issuance needs to know about a CA.

use std::time::SystemTime;

use sha2::Digest;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::certificate::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::name::Name;

use super::*;
use crate::csr::KeyFingerprint;

/// What the CA is, as far as issuing is concerned.
#[derive(Debug, Clone)]
pub struct CaInfo {
    pub(super) subject: Name,
    pub(super) key_id: Vec<u8>,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) fingerprint: KeyFingerprint,
    /// The CA's public key: what a remotely signed certificate must verify
    /// under.
    pub(super) public_key: SubjectPublicKeyInfoOwned,
}

impl CaInfo {
    /// Read a CA certificate: it must say CA:true and allow keyCertSign.
    /// The key identifier used in issued certificates' and CRLs' AKI is the
    /// CA certificate's own SKI (not its AKI, which names *its* issuer).
    pub fn from_certificate(cert: &Certificate) -> Result<CaInfo, IssueError> {
        let tbs = cert.tbs_certificate();
        let bc = tbs
            .get_extension::<BasicConstraints>()
            .map_err(|e| IssueError::BadCa(format!("basicConstraints: {e}")))?;
        if !bc.is_some_and(|(_, bc)| bc.ca) {
            return Err(IssueError::BadCa(
                "certificate is not a CA (no basicConstraints CA:true)".to_owned(),
            ));
        }
        let ku = tbs
            .get_extension::<KeyUsage>()
            .map_err(|e| IssueError::BadCa(format!("keyUsage: {e}")))?;
        if let Some((_, ku)) = ku
            && !ku.0.contains(KeyUsages::KeyCertSign)
        {
            return Err(IssueError::BadCa(
                "certificate's keyUsage lacks keyCertSign".to_owned(),
            ));
        }
        let spki = tbs.subject_public_key_info();
        let key_id = match tbs
            .get_extension::<SubjectKeyIdentifier>()
            .map_err(|e| IssueError::BadCa(format!("subjectKeyIdentifier: {e}")))?
        {
            Some((_, ski)) => ski.0.as_bytes().to_vec(),
            None => key_identifier(spki),
        };
        Ok(CaInfo {
            subject: tbs.subject().clone(),
            key_id,
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
            fingerprint: KeyFingerprint::of(spki).map_err(enc)?,
            public_key: spki.clone(),
        })
    }

    /// The CA's subject.
    pub fn subject(&self) -> &Name {
        &self.subject
    }

    /// The CA's public key (what its certificates and CRLs verify under).
    pub(crate) fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.public_key
    }

    /// The CA's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The CA key's fingerprint.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }
}

/// RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey bits.
pub(super) fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    let digest = sha2::Sha256::digest(spki.subject_public_key.raw_bytes());
    digest.get(..20).unwrap_or_default().to_vec()
}
