//! The local CA: a P-256 key and its certificate, signing leaves and CRLs.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use der::asn1::{OctetString, Uint};
use der::oid::AssociatedOid;
use der::{Decode, Encode, EncodePem};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use signature::Signer as _;
use spki::{
    DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlReason, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use super::*;
use crate::csr::{KeyFingerprint, ValidatedCsr};
use crate::key::CaKey;
use crate::oids;
use crate::profile::format_duration;

/// The CA with its own P-256 key (the embedded default).
pub struct LocalCa {
    pub(super) key: CaKey,
    pub(super) cert: Certificate,
    /// The CA certificate's issuers up to a self-issued root (empty for a
    /// root CA): what a verifier needs besides the CA certificate.
    pub(super) chain: Vec<Certificate>,
    pub(super) info: CaInfo,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("subject", &self.info.subject.to_string())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Subject, issuer and extensions exactly as given: the builder adds nothing
/// of its own. A leaf takes them from the plan; the self-signed root has
/// issuer = subject and CA:true with pathLen 0, keyCertSign + cRLSign, SKI.
pub(super) struct ExactProfile {
    pub(super) issuer: Name,
    pub(super) subject: Name,
    pub(super) extensions: Vec<Extension>,
}

impl BuilderProfile for ExactProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

pub(super) fn validity(
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Validity, IssueError> {
    Ok(Validity::new(
        Time::try_from(seconds(not_before)).map_err(enc)?,
        Time::try_from(seconds(not_after)).map_err(enc)?,
    ))
}

impl LocalCa {
    /// Create a new CA for `env`: a fresh P-256 key and a self-signed root
    /// valid from `now` (backdated 5 minutes) for `lifetime`.
    pub fn generate(
        env: CaEnv,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<LocalCa, IssueError> {
        use p256::elliptic_curve::Generate;
        let key = CaKey::new(
            SigningKey::try_generate().map_err(|e| IssueError::Signer(format!("random: {e}")))?,
        )
        .map_err(IssueError::Signer)?;
        let spki =
            SubjectPublicKeyInfoOwned::from_key(key.signing_key().verifying_key()).map_err(enc)?;
        let root = name(&[
            (oids::ORGANIZATION, "entityOS"),
            (oids::ORGANIZATIONAL_UNIT, env.as_str()),
            (oids::COMMON_NAME, &env.root_common_name()),
        ])?;
        let extensions = vec![
            extension(
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )?,
            extension(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))?,
            extension(
                false,
                &SubjectKeyIdentifier(OctetString::new(key_identifier(&spki)).map_err(enc)?),
            )?,
        ];
        let now = seconds(now);
        let profile = ExactProfile {
            issuer: root.clone(),
            subject: root,
            extensions,
        };
        let builder = CertificateBuilder::new(
            profile,
            Serial::random()?.to_serial_number()?,
            validity(now - Duration::from_secs(300), now + lifetime)?,
            spki,
        )
        .map_err(enc)?;
        let cert = builder
            .build::<_, DerSignature>(&key)
            .map_err(|e| IssueError::Signer(e.to_string()))?;
        let info = CaInfo::from_certificate(&cert)?;
        Ok(LocalCa {
            key,
            cert,
            chain: Vec::new(),
            info,
        })
    }

    /// Load a CA from its PKCS#8 key PEM (encrypted when a passphrase is
    /// given) and its certificate PEM. Used for `ca import` too: the key
    /// must be P-256 and match the certificate, which must be a CA. An
    /// intermediate CA's certificate is followed in the same PEM by its
    /// issuers up to the root, each signing the one before
    /// ([`LocalCa::trust_bundle`] holds them all, so a verifier that wants
    /// a self-signed anchor finds one).
    pub fn from_pem(
        key_pem: &str,
        cert_pem: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<LocalCa, IssueError> {
        let key = match passphrase {
            Some(p) => SigningKey::from_pkcs8_encrypted_pem(key_pem, p.0.as_bytes()).map_err(|e| {
                IssueError::BadCa(format!(
                    "cannot decrypt the CA key (wrong passphrase or not an encrypted P-256 PKCS#8 key): {e}"
                ))
            })?,
            None => SigningKey::from_pkcs8_pem(key_pem).map_err(|e| {
                IssueError::BadCa(format!(
                    "cannot read the CA key as an unencrypted P-256 PKCS#8 key (is it encrypted? set the passphrase variable): {e}"
                ))
            })?};
        let mut certs = Certificate::load_pem_chain(cert_pem.trim().as_bytes())
            .map_err(|e| IssueError::BadCa(format!("cannot read the CA certificate: {e}")))?
            .into_iter();
        let cert = certs
            .next()
            .ok_or_else(|| IssueError::BadCa("no CA certificate in the PEM".to_owned()))?;
        let chain: Vec<Certificate> = certs.collect();
        check_chain(&cert, &chain)?;
        let key = CaKey::new(key).map_err(IssueError::BadCa)?;
        let key_spki = key
            .signing_key()
            .verifying_key()
            .to_public_key_der()
            .map_err(enc)?;
        if KeyFingerprint::of_der(key_spki.as_bytes())
            != KeyFingerprint::of(cert.tbs_certificate().subject_public_key_info()).map_err(enc)?
        {
            return Err(IssueError::BadCa(
                "the CA key does not match the CA certificate".to_owned(),
            ));
        }
        let info = CaInfo::from_certificate(&cert)?;
        Ok(LocalCa {
            key,
            cert,
            chain,
            info,
        })
    }

    /// The key as PKCS#8 PEM; encrypted (scrypt + AES-256-CBC) with a
    /// passphrase. The caller writes it with mode 0600.
    pub fn key_pem(
        &self,
        passphrase: Option<&Passphrase>,
    ) -> Result<Zeroizing<String>, IssueError> {
        match passphrase {
            Some(p) => self
                .key
                .signing_key()
                .to_pkcs8_encrypted_pem(p.0.as_bytes(), LineEnding::LF)
                .map_err(enc),
            None => self
                .key
                .signing_key()
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(enc),
        }
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA certificate as PEM, followed by its issuers (an
    /// intermediate's chain up to the root; nothing more for a root).
    pub fn certificate_pem(&self) -> Result<String, IssueError> {
        let mut pem = self.cert.to_pem(LineEnding::LF).map_err(enc)?;
        for issuer in &self.chain {
            pem.push_str(&issuer.to_pem(LineEnding::LF).map_err(enc)?);
        }
        Ok(pem)
    }

    /// What issuance needs to know about this CA.
    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// The trust bundle for an ALB trust store or API Gateway truststore:
    /// the CA chain as PEM, the CA first, up to the root (a root CA: just
    /// the root).
    pub fn trust_bundle(&self) -> Result<String, IssueError> {
        self.certificate_pem()
    }

    /// Sign a planned certificate. The to-be-signed bytes are decoded and
    /// checked against the plan before the key touches them; the
    /// certificate is those bytes, the algorithm and the signature.
    /// ([`issue`] checks what any signer returns once more.)
    pub fn sign(&self, plan: &CertificatePlan) -> Result<Certificate, IssueError> {
        if plan.issuer != self.info.subject || plan.authority_key_id != self.info.key_id {
            return Err(violation("issuer", "plan was made for another CA"));
        }
        let profile = ExactProfile {
            issuer: plan.issuer.clone(),
            subject: plan.subject.clone(),
            extensions: plan.extensions().to_vec(),
        };
        let mut builder = CertificateBuilder::new(
            profile,
            plan.serial.to_serial_number()?,
            validity(plan.not_before, plan.not_after)?,
            plan.public_key.clone(),
        )
        .map_err(enc)?;
        let tbs_der = builder.finalize(&self.key).map_err(enc)?;
        let tbs = TbsCertificate::from_der(&tbs_der).map_err(enc)?;
        check_tbs(&tbs, plan, Strictness::Exact)?;
        let signature: DerSignature = self
            .key
            .try_sign(&tbs_der)
            .map_err(|e| IssueError::Signer(e.to_string()))?;
        let cert = builder
            .assemble(signature.to_bitstring().map_err(enc)?, &self.key)
            .map_err(enc)?;
        Ok(cert)
    }

    /// A CRL: signed by the CA, `number` (monotonic, kept by the caller's
    /// store), thisUpdate `now` minus [`CRL_BACKDATE`], nextUpdate
    /// `now + validity` (at most 24 h); no reasonCode for `unspecified`.
    /// The AKI is the CA's own key identifier — x509-cert's `CrlBuilder`
    /// copies the issuer certificate's AKI instead, which names the CA's
    /// parent for an intermediate.
    pub fn crl(
        &self,
        number: u64,
        revoked: &[RevokedEntry],
        now: SystemTime,
        validity: Duration,
    ) -> Result<CertificateList, IssueError> {
        if validity > MAX_CRL_VALIDITY || validity.is_zero() {
            return Err(IssueError::BadPolicy(format!(
                "crl validity {} must be between 1s and 24h",
                format_duration(validity)
            )));
        }
        let now = seconds(now);
        let mut entries = Vec::with_capacity(revoked.len());
        for r in revoked {
            // RFC 5280 §5.3.1: "the reason code CRL entry extension SHOULD
            // be absent instead of using the unspecified (0) reasonCode
            // value".
            let reason = match r.reason {
                RevocationReason::Unspecified => None,
                other => Some(vec![Extension {
                    extn_id: CrlReason::OID,
                    critical: false,
                    extn_value: OctetString::new(other.crl_reason().to_der().map_err(enc)?)
                        .map_err(enc)?,
                }]),
            };
            entries.push(RevokedCert {
                serial_number: r.serial.to_serial_number()?,
                revocation_date: Time::try_from(seconds(r.revoked_at)).map_err(enc)?,
                crl_entry_extensions: reason,
            });
        }
        let number = Uint::new(&number.to_be_bytes()).map_err(enc)?;
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(self.info.key_id.clone()).map_err(enc)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        let tbs = TbsCertList {
            version: Version::V2,
            signature: self.key.signature_algorithm_identifier().map_err(enc)?,
            issuer: self.info.subject.clone(),
            // Backdated like a certificate's notBefore: a verifier whose
            // clock is behind would otherwise call a fresh CRL "not yet
            // valid" and fail every check that needs it.
            this_update: Time::try_from(now.checked_sub(CRL_BACKDATE).unwrap_or(now))
                .map_err(enc)?,
            next_update: Some(Time::try_from(now + validity).map_err(enc)?),
            revoked_certificates: if entries.is_empty() {
                None
            } else {
                Some(entries)
            },
            crl_extensions: Some(vec![
                extension(false, &aki)?,
                extension(false, &x509_cert::ext::pkix::CrlNumber(number))?,
            ]),
        };
        let tbs_der = tbs.to_der().map_err(enc)?;
        let signature: DerSignature = self
            .key
            .try_sign(&tbs_der)
            .map_err(|e| IssueError::Signer(e.to_string()))?;
        Ok(CertificateList {
            signature_algorithm: tbs.signature.clone(),
            tbs_cert_list: tbs,
            signature: signature.to_bitstring().map_err(enc)?,
        })
    }
}

impl Signer for LocalCa {
    fn issue(
        &self,
        plan: &CertificatePlan,
        _csr: &ValidatedCsr,
    ) -> impl Future<Output = Result<Certificate, IssueError>> + Send {
        std::future::ready(self.sign(plan))
    }

    fn strictness(&self) -> Strictness {
        Strictness::Exact
    }

    fn withdraw(
        &self,
        _serial: &Serial,
    ) -> impl Future<Output = Result<Withdrawal, IssueError>> + Send {
        std::future::ready(Ok(Withdrawal::NotKept))
    }
}

/// An imported CA's chain: each certificate issued and signed by the next,
/// each issuer a CA, the last self-issued. Without its issuers an
/// intermediate's trust bundle verifies nowhere that wants a root anchor
/// (`openssl verify -CAfile`), so an incomplete chain is refused.
pub(super) fn check_chain(cert: &Certificate, chain: &[Certificate]) -> Result<(), IssueError> {
    let mut current = cert;
    for issuer in chain {
        let tbs = current.tbs_certificate();
        if tbs.issuer() != issuer.tbs_certificate().subject() {
            return Err(IssueError::BadCa(format!(
                "certificate {} is issued by {}, but the next certificate is {}",
                tbs.subject(),
                tbs.issuer(),
                issuer.tbs_certificate().subject()
            )));
        }
        CaInfo::from_certificate(issuer)?;
        crate::csr::verify_signed(
            issuer.tbs_certificate().subject_public_key_info(),
            current.signature_algorithm(),
            &tbs.to_der().map_err(enc)?,
            current.signature(),
        )
        .map_err(|e| {
            IssueError::BadCa(format!(
                "certificate {} is not signed by {}: {e}",
                tbs.subject(),
                issuer.tbs_certificate().subject()
            ))
        })?;
        current = issuer;
    }
    let last = current.tbs_certificate();
    if last.issuer() != last.subject() {
        return Err(IssueError::BadCa(format!(
            "certificate {} is issued by {}, which is not in the file: append the issuers up to the root CA after the CA certificate, so the trust bundle verifies",
            last.subject(),
            last.issuer()
        )));
    }
    Ok(())
}
