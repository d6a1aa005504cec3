//! Planning: exactly what will be signed, decided before anything is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{Any, Ia5String, ObjectIdentifier, OctetString, Utf8StringRef};
use der::oid::AssociatedOid;
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage,
    KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use super::*;
use crate::csr::{CsrError, KeyFingerprint, ValidatedCsr};
use crate::oids;
use crate::profile::{IssuancePolicy, Profile, format_duration};

/// What is being asked for: a validated CSR for an account and profile.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    /// The validated CSR (its key is all that is used).
    pub csr: &'a ValidatedCsr,
    /// The account, from eos-sec's records.
    pub account: &'a Account,
    /// The profile.
    pub profile: Profile,
    /// A lifetime within the profile's cap; `None` for the default.
    pub lifetime: Option<Duration>,
}

/// Exactly what will be signed. Only [`plan_certificate`] makes one.
#[derive(Debug, Clone)]
pub struct CertificatePlan {
    pub(super) serial: Serial,
    pub(super) issuer: Name,
    pub(super) subject: Name,
    pub(super) uri: String,
    pub(super) public_key: SubjectPublicKeyInfoOwned,
    pub(super) fingerprint: KeyFingerprint,
    pub(super) key_id: Vec<u8>,
    pub(super) authority_key_id: Vec<u8>,
    pub(super) issuer_public_key: SubjectPublicKeyInfoOwned,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) crl_url: Option<String>,
    pub(super) account: Account,
    pub(super) profile: Profile,
    /// Encoded once by [`plan_certificate`]; signing and every check use
    /// these very values.
    pub(super) extensions: Vec<Extension>,
}

impl CertificatePlan {
    /// The serial the certificate will carry (local CA; AWS Private CA
    /// chooses its own).
    pub fn serial(&self) -> &Serial {
        &self.serial
    }
    /// The subject: `O=<space>, CN=<user>` ([`Account::subject_attributes`]).
    pub fn subject(&self) -> &Name {
        &self.subject
    }
    /// The URI SAN.
    pub fn uri(&self) -> &str {
        &self.uri
    }
    /// notBefore (now minus the backdate).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    /// notAfter (capped by the CA's own notAfter).
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// The account.
    pub fn account(&self) -> &Account {
        &self.account
    }
    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }
    /// The certified key's fingerprint.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }
    /// The certified public key.
    pub fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.public_key
    }
    /// The CRL distribution point, if configured.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// The extensions the certificate carries, in order.
    pub(super) fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// Encode the extensions. Criticality per RFC 5280 §4.2.1.9
    /// (basicConstraints: critical so that no relying party can ignore
    /// CA:false) and §4.2.1.3 (keyUsage: critical).
    pub(super) fn encode_extensions(&self) -> Result<Vec<Extension>, IssueError> {
        let uri = GeneralName::UniformResourceIdentifier(Ia5String::new(&self.uri).map_err(enc)?);
        let mut exts = vec![
            extension(
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )?,
            extension(true, &KeyUsage(KeyUsages::DigitalSignature.into()))?,
            extension(false, &ExtendedKeyUsage(vec![oids::CLIENT_AUTH]))?,
            extension(
                false,
                &SubjectKeyIdentifier(OctetString::new(self.key_id.clone()).map_err(enc)?),
            )?,
            extension(
                false,
                &AuthorityKeyIdentifier {
                    key_identifier: Some(
                        OctetString::new(self.authority_key_id.clone()).map_err(enc)?,
                    ),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
            )?,
            extension(false, &SubjectAltName(vec![uri]))?,
        ];
        if let Some(url) = &self.crl_url {
            let name = GeneralName::UniformResourceIdentifier(Ia5String::new(url).map_err(enc)?);
            exts.push(extension(
                false,
                &CrlDistributionPoints(vec![DistributionPoint {
                    distribution_point: Some(DistributionPointName::FullName(vec![name])),
                    reasons: None,
                    crl_issuer: None,
                }]),
            )?);
        }
        Ok(exts)
    }
}

pub(super) fn extension<T: Encode + AssociatedOid>(
    critical: bool,
    value: &T,
) -> Result<Extension, IssueError> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(enc)?).map_err(enc)?,
    })
}

/// Build a name from (type, value) pairs, one attribute per RDN, values as
/// UTF8String (RFC 5280 §4.1.2.6). Built structurally, not from RFC 4514
/// text, so a user id containing `+` cannot add attributes.
pub(super) fn name(parts: &[(ObjectIdentifier, &str)]) -> Result<Name, IssueError> {
    let mut rdns = Vec::with_capacity(parts.len());
    for (oid, value) in parts {
        let value = Any::encode_from(&Utf8StringRef::new(value).map_err(enc)?).map_err(enc)?;
        let atv = AttributeTypeAndValue { oid: *oid, value };
        rdns.push(RelativeDistinguishedName::try_from(vec![atv]).map_err(enc)?);
    }
    let der = RdnSequence::from(rdns).to_der().map_err(enc)?;
    Name::from_der(&der).map_err(enc)
}

pub(super) fn seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 3339 UTC text of a time to the second (for messages and the
/// inventory): eos-identity's one format, re-exported where the CA's
/// callers have always found it.
pub use eos_identity::rfc3339;

/// Decide everything about a certificate before anything is signed.
///
/// Refuses the CA's own key and a key bound to another account
/// (`key_owner` is what the inventory says about the CSR's key), a lifetime
/// over the profile's cap, and a CA that is not valid now. notAfter is the
/// smaller of now + lifetime and the CA's notAfter.
pub fn plan_certificate(
    ca: &CaInfo,
    request: &IssueRequest<'_>,
    policy: &IssuancePolicy,
    key_owner: Option<&KeyOwner>,
    now: SystemTime,
) -> Result<CertificatePlan, IssueError> {
    policy.check().map_err(IssueError::BadPolicy)?;
    let csr = request.csr;
    let account = request.account;
    if csr.fingerprint() == ca.fingerprint {
        return Err(CsrError::CaKey.into());
    }
    if let Some(owner) = key_owner
        && (owner.space != account.space || owner.user != account.user)
    {
        return Err(CsrError::KeyReuse {
            fingerprint: csr.fingerprint().to_string(),
            space: owner.space.to_string(),
            user: owner.user.to_string(),
        }
        .into());
    }
    let rule = policy.lifetime(request.profile);
    let lifetime = request.lifetime.unwrap_or(rule.default);
    if lifetime.is_zero() {
        return Err(IssueError::LifetimeZero {
            profile: request.profile,
            max: format_duration(rule.max),
        });
    }
    if lifetime > rule.max {
        return Err(IssueError::LifetimeOverCap {
            profile: request.profile,
            requested: format_duration(lifetime),
            max: format_duration(rule.max),
        });
    }
    let now = seconds(now);
    if now < ca.not_before || now >= ca.not_after {
        return Err(IssueError::CaNotValid {
            not_before: rfc3339(ca.not_before),
            not_after: rfc3339(ca.not_after),
        });
    }
    let not_before = now
        .checked_sub(policy.backdate)
        .unwrap_or(now)
        .max(ca.not_before);
    let not_after = seconds((now + lifetime).min(ca.not_after));
    let mut plan = CertificatePlan {
        serial: Serial::random()?,
        issuer: ca.subject.clone(),
        subject: name(&account.subject_attributes())?,
        uri: account.uri(),
        public_key: csr.public_key().clone(),
        fingerprint: csr.fingerprint(),
        key_id: key_identifier(csr.public_key()),
        authority_key_id: ca.key_id.clone(),
        issuer_public_key: ca.public_key.clone(),
        not_before,
        not_after,
        crl_url: policy.crl_url.clone(),
        account: account.clone(),
        profile: request.profile,
        extensions: Vec::new(),
    };
    plan.extensions = plan.encode_extensions()?;
    Ok(plan)
}
