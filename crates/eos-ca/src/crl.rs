//! A CRL the CA's key signed somewhere else: AWS Private CA writes its own
//! CRL (DER) to an S3 bucket, and eos-sec carries that object to the edge
//! instead of signing another. Before it goes anywhere it is read strictly
//! and held to the CA: issued by the CA's name, signed by the CA's key, a
//! complete CRL (no delta, no partition) with a CRL number.
//!
//! A bucket is not the CA: anyone who can write the object could put a CRL
//! there, and an edge that took it would trust whatever it (does not) list.

use std::time::SystemTime;

use der::oid::AssociatedOid;
use der::{Decode, Encode};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, CrlReason};

use crate::ca::{CaInfo, Serial};

/// Why a CRL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Not a DER (or PEM `X509 CRL`) certificate list.
    #[error("not a CRL: {0}")]
    Malformed(String),
    /// Issued by another name than the CA's subject.
    #[error("issued by `{found}`, not by the CA `{expected}`")]
    WrongIssuer {
        /// The CRL's issuer.
        found: String,
        /// The CA's subject.
        expected: String,
    },
    /// The signature does not verify under the CA's key.
    #[error("signature does not verify under the CA's key: {0}")]
    BadSignature(String),
    /// No CRL number, or one over 64 bits.
    #[error("CRL number: {0}")]
    Number(String),
    /// A kind of CRL an ALB trust store cannot stand in for the whole CA
    /// with (a delta or partitioned CRL), or another critical extension.
    #[error("unsupported CRL: {0}")]
    Unsupported(String),
}

/// A CRL checked against its CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCrl {
    /// The CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate (a CRL without one never expires; AWS always writes one).
    pub next_update: Option<SystemTime>,
    /// The serials it lists.
    pub serials: Vec<Serial>,
    /// The same CRL as PEM (`X509 CRL`): the very DER the CA signed, only
    /// base64-wrapped.
    pub pem: String,
}

impl CheckedCrl {
    /// Whether `serial` is on the list.
    pub fn lists(&self, serial: &Serial) -> bool {
        self.serials.contains(serial)
    }
}

fn malformed(e: impl std::fmt::Display) -> CrlError {
    CrlError::Malformed(e.to_string())
}

/// The DER of `body`: DER as it is, or the one `X509 CRL` PEM block.
fn der_of(body: &[u8]) -> Result<Vec<u8>, CrlError> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let (label, der) = der::pem::decode_vec(body).map_err(malformed)?;
    if label != "X509 CRL" {
        return Err(CrlError::Malformed(format!(
            "PEM label `{label}`, expected `X509 CRL`"
        )));
    }
    Ok(der)
}

/// Read `body` (DER, as AWS Private CA writes it, or PEM) and hold it to
/// `ca`: issuer, signature (the CA's key, the algorithm inner and outer
/// alike), CRL number, and no critical extension but the ones a complete
/// CRL may carry. Entry extensions other than the reason code must not be
/// critical either (RFC 5280 §5.3: a critical one not understood fails the
/// whole CRL).
pub fn check_ca_crl(ca: &CaInfo, body: &[u8]) -> Result<CheckedCrl, CrlError> {
    let der = der_of(body)?;
    let crl: CertificateList = CertificateList::from_der(&der).map_err(malformed)?;
    // Strict DER: what is signed is what the CA wrote, byte for byte.
    if crl.to_der().map_err(malformed)? != der {
        return Err(CrlError::Malformed(
            "not DER (re-encoding differs)".to_owned(),
        ));
    }
    let tbs = &crl.tbs_cert_list;
    if crl.signature_algorithm != tbs.signature {
        return Err(CrlError::BadSignature(
            "outer and inner signature algorithms differ".to_owned(),
        ));
    }
    if tbs.issuer != *ca.subject() {
        return Err(CrlError::WrongIssuer {
            found: tbs.issuer.to_string(),
            expected: ca.subject().to_string(),
        });
    }
    let signed = tbs.to_der().map_err(malformed)?;
    crate::csr::verify_signed(
        ca.public_key(),
        &crl.signature_algorithm,
        &signed,
        &crl.signature,
    )
    .map_err(|e| CrlError::BadSignature(e.to_string()))?;
    let mut number = None;
    for ext in tbs.crl_extensions.iter().flatten() {
        if ext.extn_id == CrlNumber::OID {
            let n = CrlNumber::from_der(ext.extn_value.as_bytes())
                .map_err(|e| CrlError::Number(e.to_string()))?;
            number = Some(number_u64(n.0.as_bytes())?);
        } else if ext.critical && ext.extn_id != AuthorityKeyIdentifier::OID {
            // Delta CRL indicator, issuing distribution point (partitioned
            // CRLs), anything else critical: not a complete CRL of the CA.
            return Err(CrlError::Unsupported(format!(
                "critical extension {}",
                ext.extn_id
            )));
        }
    }
    let number = number.ok_or_else(|| CrlError::Number("missing".to_owned()))?;
    let mut serials = Vec::new();
    for entry in tbs.revoked_certificates.iter().flatten() {
        for ext in entry.crl_entry_extensions.iter().flatten() {
            if ext.critical && ext.extn_id != CrlReason::OID {
                return Err(CrlError::Unsupported(format!(
                    "critical entry extension {}",
                    ext.extn_id
                )));
            }
        }
        serials.push(Serial::from_bytes(entry.serial_number.as_bytes()));
    }
    let pem =
        der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).map_err(malformed)?;
    Ok(CheckedCrl {
        number,
        this_update: tbs.this_update.to_system_time(),
        next_update: tbs.next_update.map(|t| t.to_system_time()),
        serials,
        pem,
    })
}

/// A CRL number's magnitude bytes as a u64 (AWS Private CA numbers its CRLs
/// by milliseconds since the epoch, well inside 64 bits).
fn number_u64(bytes: &[u8]) -> Result<u64, CrlError> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let magnitude = bytes.get(first..).unwrap_or_default();
    if magnitude.len() > 8 {
        return Err(CrlError::Number(format!(
            "{} is over 64 bits",
            hex::encode(bytes)
        )));
    }
    Ok(magnitude.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::ca::{CaEnv, LocalCa, RevocationReason, RevokedEntry};

    fn ca() -> LocalCa {
        LocalCa::generate(
            CaEnv::Dev,
            Duration::from_secs(86400 * 30),
            SystemTime::now(),
        )
        .unwrap()
    }

    fn signed_crl(ca: &LocalCa, number: u64, serials: &[&str]) -> Vec<u8> {
        let revoked: Vec<RevokedEntry> = serials
            .iter()
            .map(|s| RevokedEntry {
                serial: Serial::from_hex(s).unwrap(),
                revoked_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                reason: RevocationReason::KeyCompromise,
            })
            .collect();
        ca.crl(
            number,
            &revoked,
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .to_der()
        .unwrap()
    }

    #[test]
    fn a_crl_of_the_ca_is_read_in_der_and_pem() {
        let ca = ca();
        let der = signed_crl(&ca, 1_519_676_905_984, &["0a1b", "ff"]);
        let checked = check_ca_crl(ca.info(), &der).unwrap();
        assert_eq!(checked.number, 1_519_676_905_984);
        assert!(checked.lists(&Serial::from_hex("0a1b").unwrap()));
        assert!(checked.lists(&Serial::from_hex("00ff").unwrap()));
        assert!(!checked.lists(&Serial::from_hex("01").unwrap()));
        assert!(checked.next_update.is_some());
        assert_eq!(
            check_ca_crl(ca.info(), checked.pem.as_bytes()).unwrap(),
            checked
        );
    }

    #[test]
    fn rejects_a_crl_of_another_key_or_name() {
        let ours = ca();
        let theirs = ca();
        // Same subject (both dev roots), another key: the signature fails.
        let der = signed_crl(&theirs, 2, &[]);
        assert!(matches!(
            check_ca_crl(ours.info(), &der),
            Err(CrlError::BadSignature(_))
        ));
        let staging = LocalCa::generate(
            CaEnv::Staging,
            Duration::from_secs(86400),
            SystemTime::now(),
        )
        .unwrap();
        assert!(matches!(
            check_ca_crl(ours.info(), &signed_crl(&staging, 2, &[])),
            Err(CrlError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn rejects_a_tampered_or_truncated_crl() {
        let ca = ca();
        let der = signed_crl(&ca, 3, &["0a"]);
        let mut tampered = der.clone();
        // Flip a bit inside the revoked serial: the signature breaks.
        let at = tampered
            .windows(3)
            .position(|w| w == [0x02, 0x01, 0x0a])
            .unwrap()
            + 2;
        tampered[at] ^= 0x01;
        assert!(check_ca_crl(ca.info(), &tampered).is_err());
        for cut in 0..der.len() {
            assert!(
                check_ca_crl(ca.info(), &der[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            check_ca_crl(
                ca.info(),
                b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
            ),
            Err(CrlError::Malformed(_))
        ));
    }

    #[test]
    fn crl_numbers_over_64_bits_are_refused() {
        assert_eq!(number_u64(&[0, 1, 2]).unwrap(), 0x0102);
        assert!(number_u64(&[1; 9]).is_err());
        assert_eq!(number_u64(&[0; 12]).unwrap(), 0);
    }
}
