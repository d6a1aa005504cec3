//! Planning, signing and checking certificates; the local CA; CRLs.
//!
//! The certificate's contents come from the account record and the profile,
//! never from the CSR: [`plan_certificate`] writes down exactly what will be
//! signed, [`check_tbs`] holds the to-be-signed certificate (local key) or
//! the returned one (AWS Private CA) to that plan, field by field.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{Any, Ia5String, ObjectIdentifier, OctetString, Uint, Utf8StringRef};
use der::oid::AssociatedOid;
use der::{Decode, Encode, EncodePem};
use eos_identity::{SpaceId, UserId};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::Digest;
use signature::Signer as _;
use spki::{
    DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, CrlReason, ExtendedKeyUsage,
    KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use crate::Code;
use crate::csr::{CsrError, KeyFingerprint, ValidatedCsr};
use crate::key::CaKey;
use crate::oids;
use crate::profile::{IssuancePolicy, Profile, format_duration};

/// Why a certificate was not issued (besides a refused CSR), or a CA could
/// not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The CSR or its key was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// A lifetime over the profile's cap was asked for.
    #[error("lifetime {requested} for profile {profile} is over its cap {max}")]
    LifetimeOverCap {
        /// The profile.
        profile: Profile,
        /// What was asked.
        requested: String,
        /// The cap.
        max: String,
    },
    /// A lifetime of zero was asked for.
    #[error("lifetime 0s for profile {profile} is empty; give a lifetime above zero, up to {max}")]
    LifetimeZero {
        /// The profile.
        profile: Profile,
        /// The cap.
        max: String,
    },
    /// The CA certificate has expired or expires before anything useful
    /// could be issued.
    #[error("the CA certificate is not valid now (valid {not_before} to {not_after})")]
    CaNotValid {
        /// CA notBefore.
        not_before: String,
        /// CA notAfter.
        not_after: String,
    },
    /// The CA certificate or key is unusable (not a CA, key mismatch,
    /// unsupported key).
    #[error("ca: {0}")]
    BadCa(String),
    /// The issuance policy is incoherent.
    #[error("issuance policy: {0}")]
    BadPolicy(String),
    /// The certificate about to be signed, or the one returned, breaks the
    /// plan. Never expected: it means a bug or a misbehaving backend, and
    /// nothing is issued.
    #[error("certificate policy violation: {rule}: {detail}")]
    PolicyViolation {
        /// The rule, e.g. `basic-constraints`.
        rule: &'static str,
        /// What was found.
        detail: String,
    },
    /// Encoding failed.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The signing backend failed (AWS Private CA, key unavailable).
    #[error("signer: {0}")]
    Signer(String),
    /// The signer returned a certificate that breaks the plan: it is not
    /// handed out, and it was withdrawn from the signer ([`Signer::withdraw`]:
    /// revoked where the signer keeps what it signs).
    #[error(
        "the CA signed certificate {serial}, which breaks its plan ({violation}); {withdrawal}"
    )]
    Rejected {
        /// The certificate's serial.
        serial: String,
        /// What it breaks.
        violation: Box<IssueError>,
        /// What became of it ([`withdrawal_note`]).
        withdrawal: String,
    },
}

impl IssueError {
    /// A stable code for scripts and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            IssueError::Csr(e) => e.code(),
            IssueError::LifetimeOverCap { .. } => Code::LifetimeOverCap.as_str(),
            IssueError::LifetimeZero { .. } => Code::LifetimeZero.as_str(),
            IssueError::CaNotValid { .. } => Code::CaNotValid.as_str(),
            IssueError::BadCa(_) => Code::CaUnusable.as_str(),
            IssueError::BadPolicy(_) => Code::PolicyInvalid.as_str(),
            IssueError::PolicyViolation { .. } => Code::CertPolicyViolation.as_str(),
            IssueError::Encoding(_) => Code::Encoding.as_str(),
            IssueError::Signer(_) => Code::SignerFailed.as_str(),
            IssueError::Rejected { violation, .. } => violation.code(),
        }
    }

    /// Whether the refusal is about the caller's input (exit 2) rather than
    /// an operational failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            IssueError::Csr(_)
                | IssueError::LifetimeOverCap { .. }
                | IssueError::LifetimeZero { .. }
        )
    }
}

fn enc(e: impl fmt::Display) -> IssueError {
    IssueError::Encoding(e.to_string())
}

fn violation(rule: &'static str, detail: impl Into<String>) -> IssueError {
    IssueError::PolicyViolation {
        rule,
        detail: detail.into(),
    }
}

/// The environment a CA belongs to. Each has its own key and root name, so
/// a certificate from one environment never verifies under another's trust
/// bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaEnv {
    /// Development.
    Dev,
    /// Staging.
    Staging,
    /// Production.
    Prod,
}

impl CaEnv {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaEnv::Dev => "dev",
            CaEnv::Staging => "staging",
            CaEnv::Prod => "prod",
        }
    }

    /// The root's common name.
    pub fn root_common_name(self) -> String {
        format!("entityOS {} Root CA", self.as_str())
    }
}

impl fmt::Display for CaEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaEnv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dev" => Ok(CaEnv::Dev),
            "staging" => Ok(CaEnv::Staging),
            "prod" => Ok(CaEnv::Prod),
            _ => Err(format!(
                "unknown environment `{s}`; expected dev, staging or prod"
            )),
        }
    }
}

/// A certificate serial number, shown as lower-case hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 16 random bytes (127 bits of entropy, positive, fixed length): well
    /// over RFC 5280's and the CA/B Forum's 64-bit minimum.
    pub fn random() -> Result<Serial, IssueError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| IssueError::Signer(format!("random: {e}")))?;
        if let Some(first) = b.first_mut() {
            *first = (*first & 0x7f) | 0x40;
        }
        Ok(Serial(b.to_vec()))
    }

    /// Parse hex (as printed); colons allowed.
    pub fn from_hex(s: &str) -> Result<Serial, String> {
        let clean: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&clean).map_err(|_| format!("serial `{s}` is not hex"))?;
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let bytes = bytes.get(first..).unwrap_or_default().to_vec();
        if bytes.is_empty() || bytes.len() > 20 {
            return Err(format!("serial `{s}` must be 1 to 20 non-zero bytes"));
        }
        Ok(Serial(bytes))
    }

    fn from_serial_number(s: &SerialNumber) -> Serial {
        Serial::from_bytes(s.as_bytes())
    }

    /// From big-endian bytes as a certificate or CRL carries them (leading
    /// zeros dropped).
    pub(crate) fn from_bytes(b: &[u8]) -> Serial {
        let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        Serial(b.get(first..).unwrap_or_default().to_vec())
    }

    /// The magnitude bytes, big-endian, no leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn to_serial_number(&self) -> Result<SerialNumber, IssueError> {
        SerialNumber::new(&self.0).map_err(enc)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// The account a certificate is for, from eos-sec's own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The space.
    pub space: SpaceId,
    /// The user.
    pub user: UserId,
}

/// RFC 5280 Appendix A `ub-common-name`: a CommonName holds at most 64
/// characters. (`ub-organization-name` is 64 too; a space id has at most
/// 48.)
pub const MAX_COMMON_NAME: usize = 64;

impl Account {
    /// The URI SAN naming the account: `urn:entityos:space:<space>:user:<user>`
    /// (both ids are restricted to URN-safe characters by `eos-identity`).
    pub fn uri(&self) -> String {
        eos_identity::account_uri(&self.space, &self.user)
    }

    /// The certificate subject's attributes, in order: `O=<space>`, then
    /// `CN=<user>` when the user id fits a CommonName. User ids may have up
    /// to 128 characters (e-mail style logins), CommonName at most
    /// [`MAX_COMMON_NAME`]: a longer id is left out of the subject rather
    /// than cut (a cut id could name another user) or written over the
    /// bound (pkilint calls that fatal, Python cryptography warns). The URI
    /// SAN always carries the whole id, and it is what the certificate gate
    /// reads; the subject is for people reading the certificate.
    pub fn subject_attributes(&self) -> Vec<(ObjectIdentifier, &str)> {
        let mut attributes = vec![(oids::ORGANIZATION, self.space.as_str())];
        if self.user.as_str().chars().count() <= MAX_COMMON_NAME {
            attributes.push((oids::COMMON_NAME, self.user.as_str()));
        }
        attributes
    }
}

/// What the inventory knows about a key: which account it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The space.
    pub space: SpaceId,
    /// The user.
    pub user: UserId,
}

/// What the CA is, as far as issuing is concerned.
#[derive(Debug, Clone)]
pub struct CaInfo {
    subject: Name,
    key_id: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    fingerprint: KeyFingerprint,
    /// The CA's public key: what a remotely signed certificate must verify
    /// under.
    public_key: SubjectPublicKeyInfoOwned,
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
fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    let digest = sha2::Sha256::digest(spki.subject_public_key.raw_bytes());
    digest.get(..20).unwrap_or_default().to_vec()
}

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
    serial: Serial,
    issuer: Name,
    subject: Name,
    uri: String,
    public_key: SubjectPublicKeyInfoOwned,
    fingerprint: KeyFingerprint,
    key_id: Vec<u8>,
    authority_key_id: Vec<u8>,
    issuer_public_key: SubjectPublicKeyInfoOwned,
    not_before: SystemTime,
    not_after: SystemTime,
    crl_url: Option<String>,
    account: Account,
    profile: Profile,
    /// Encoded once by [`plan_certificate`]; signing and every check use
    /// these very values.
    extensions: Vec<Extension>,
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
    fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// Encode the extensions. Criticality per RFC 5280 §4.2.1.9
    /// (basicConstraints: critical so that no relying party can ignore
    /// CA:false) and §4.2.1.3 (keyUsage: critical).
    fn encode_extensions(&self) -> Result<Vec<Extension>, IssueError> {
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

fn extension<T: Encode + AssociatedOid>(
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
fn name(parts: &[(ObjectIdentifier, &str)]) -> Result<Name, IssueError> {
    let mut rdns = Vec::with_capacity(parts.len());
    for (oid, value) in parts {
        let value = Any::encode_from(&Utf8StringRef::new(value).map_err(enc)?).map_err(enc)?;
        let atv = AttributeTypeAndValue { oid: *oid, value };
        rdns.push(RelativeDistinguishedName::try_from(vec![atv]).map_err(enc)?);
    }
    let der = RdnSequence::from(rdns).to_der().map_err(enc)?;
    Name::from_der(&der).map_err(enc)
}

fn seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 3339 UTC text of a time (for messages and the inventory).
pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    dt.format(&fmt).unwrap_or_else(|_| format!("{t:?}"))
}

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

/// How closely [`check_tbs`] holds a certificate to its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Local signing: every field exactly as planned.
    Exact,
    /// A remote CA (AWS Private CA) picks the serial, the key identifiers
    /// and may round the validity inward: serial, SKI and AKI are checked
    /// for presence and size, validity for staying inside the plan.
    Remote,
}

/// Hold a (to-be-signed or issued) certificate to its plan: version 3,
/// issuer, subject, key, validity, and exactly the planned extensions —
/// CA:false (critical), digitalSignature only (critical), clientAuth only,
/// the one URI SAN — nothing more.
pub fn check_tbs(
    tbs: &TbsCertificate,
    plan: &CertificatePlan,
    strictness: Strictness,
) -> Result<(), IssueError> {
    if tbs.version() != Version::V3 {
        return Err(violation("version", format!("{:?}", tbs.version())));
    }
    let serial = Serial::from_serial_number(tbs.serial_number());
    match strictness {
        Strictness::Exact if serial != plan.serial => {
            return Err(violation(
                "serial",
                format!("{serial} is not the planned {}", plan.serial),
            ));
        }
        _ if serial.as_bytes().len() < 8 => {
            return Err(violation("serial", format!("{serial} has under 64 bits")));
        }
        _ => {}
    }
    if tbs.issuer() != &plan.issuer {
        return Err(violation("issuer", tbs.issuer().to_string()));
    }
    if tbs.subject() != &plan.subject {
        return Err(violation("subject", tbs.subject().to_string()));
    }
    // The local key signs the canonical key exactly. A remote CA is handed
    // the CSR as received and may carry the point in the form the CSR sent
    // it: there the key must be the same key, in either encoding.
    let key = tbs.subject_public_key_info();
    let same_key = match strictness {
        Strictness::Exact => key == &plan.public_key,
        Strictness::Remote => KeyFingerprint::of(key).map_err(enc)? == plan.fingerprint,
    };
    if !same_key {
        return Err(violation("public-key", "not the CSR's key"));
    }
    let nb = tbs.validity().not_before.to_system_time();
    let na = tbs.validity().not_after.to_system_time();
    let validity_ok = match strictness {
        Strictness::Exact => nb == plan.not_before && na == plan.not_after,
        Strictness::Remote => nb >= plan.not_before && na <= plan.not_after && nb < na,
    };
    if !validity_ok {
        return Err(violation(
            "validity",
            format!("{} to {}", rfc3339(nb), rfc3339(na)),
        ));
    }
    check_extensions(
        tbs.extensions().map(Vec::as_slice).unwrap_or_default(),
        plan,
        strictness,
    )
}

fn check_extensions(
    found: &[Extension],
    plan: &CertificatePlan,
    strictness: Strictness,
) -> Result<(), IssueError> {
    let planned = plan.extensions();
    for (i, ext) in found.iter().enumerate() {
        if found.iter().skip(i + 1).any(|e| e.extn_id == ext.extn_id) {
            return Err(violation(
                "extensions",
                format!("{} twice", oids::name(&ext.extn_id)),
            ));
        }
    }
    if found.len() != planned.len() {
        return Err(violation(
            "extensions",
            format!("{} extensions, planned {}", found.len(), planned.len()),
        ));
    }
    for want in planned {
        let Some(got) = found.iter().find(|e| e.extn_id == want.extn_id) else {
            return Err(violation(
                "extensions",
                format!("{} missing", oids::name(&want.extn_id)),
            ));
        };
        let key_ids =
            want.extn_id == oids::SUBJECT_KEY_ID || want.extn_id == oids::AUTHORITY_KEY_ID;
        if strictness == Strictness::Remote && key_ids {
            if got.critical {
                return Err(violation(
                    "extensions",
                    format!("{} critical", oids::name(&got.extn_id)),
                ));
            }
            continue;
        }
        if got != want {
            return Err(violation(
                "extensions",
                format!("{} differs from the plan", oids::name(&got.extn_id)),
            ));
        }
    }
    Ok(())
}

/// Check an issued certificate against its plan and its issuer. Run on
/// every certificate before it is recorded or returned, whoever signed it.
pub fn check_issued(
    cert: &Certificate,
    plan: &CertificatePlan,
    strictness: Strictness,
) -> Result<(), IssueError> {
    if cert.signature_algorithm() != cert.tbs_certificate().signature() {
        return Err(violation(
            "signature-algorithm",
            "outer and inner algorithms differ",
        ));
    }
    check_tbs(cert.tbs_certificate(), plan, strictness)?;
    // A remote CA's answer must be signed by the CA key the plan was made
    // for. (The local key signs the very bytes `LocalCa::sign` checked a
    // moment before; verifying its own signature again would double the
    // cost of issuing and prove nothing new.)
    if strictness == Strictness::Remote {
        let tbs = cert.tbs_certificate().to_der().map_err(enc)?;
        crate::csr::verify_signed(
            &plan.issuer_public_key,
            cert.signature_algorithm(),
            &tbs,
            cert.signature(),
        )
        .map_err(|e| violation("signature", format!("not signed by the CA's key: {e}")))?;
    }
    Ok(())
}

/// The seam between issuance and whoever holds the CA key: the local key
/// ([`LocalCa`]) or AWS Private CA (in `eos-aws`). The future lets a remote
/// signer wait on the network; the local one is ready at once. Callers run
/// [`check_issued`] on what comes back.
pub trait Signer {
    /// Sign the planned certificate for the validated CSR.
    fn issue(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> impl Future<Output = Result<Certificate, IssueError>> + Send;

    /// How closely to check what this signer returns.
    fn strictness(&self) -> Strictness;

    /// Make a certificate this signer signed unusable, because it will not
    /// be handed out: it broke its plan, or it could not be recorded. A
    /// signer that keeps nothing (the local key) has nothing to do; one that
    /// keeps what it signs (AWS Private CA) revokes it. No default: a new
    /// remote signer must say what it does.
    fn withdraw(
        &self,
        serial: &Serial,
    ) -> impl Future<Output = Result<Withdrawal, IssueError>> + Send;
}

/// What [`Signer::withdraw`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// The signer keeps no copy of what it signs: the certificate existed
    /// only in memory and is gone.
    NotKept,
    /// Revoked at the CA now.
    Revoked,
    /// The CA had revoked it already.
    AlreadyRevoked,
}

/// The reason a withdrawn certificate is revoked with: it is no longer
/// needed for the purpose it was signed for (it never reached its holder).
pub const WITHDRAWAL_REASON: RevocationReason = RevocationReason::CessationOfOperation;

/// What became of a withdrawn certificate, in words for an audit entry or
/// an error message.
pub fn withdrawal_note(outcome: &Result<Withdrawal, IssueError>) -> String {
    match outcome {
        Ok(Withdrawal::NotKept) => "the signer keeps no copy".to_owned(),
        Ok(Withdrawal::Revoked) => format!("revoked at the CA ({})", WITHDRAWAL_REASON.as_str()),
        Ok(Withdrawal::AlreadyRevoked) => "already revoked at the CA".to_owned(),
        Err(e) => format!("NOT revoked at the CA ({e}): revoke it there by hand"),
    }
}

/// Issue through any signer: plan-checked before (by the local signer) and
/// after (always). A returned certificate that breaks the plan is withdrawn
/// from the signer and refused as [`IssueError::Rejected`].
pub async fn issue<S: Signer>(
    signer: &S,
    plan: &CertificatePlan,
    csr: &ValidatedCsr,
) -> Result<Certificate, IssueError> {
    let cert = signer.issue(plan, csr).await?;
    if let Err(violation) = check_issued(&cert, plan, signer.strictness()) {
        let serial = serial_of(&cert);
        return Err(IssueError::Rejected {
            withdrawal: withdrawal_note(&signer.withdraw(&serial).await),
            serial: serial.to_string(),
            violation: Box::new(violation),
        });
    }
    Ok(cert)
}

/// A CA key passphrase; redacted in `Debug`, zeroized on drop.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase; refuses an empty one.
    pub fn new(s: String) -> Result<Passphrase, IssueError> {
        if s.is_empty() {
            return Err(IssueError::BadCa(
                "the CA key passphrase is empty".to_owned(),
            ));
        }
        Ok(Passphrase(Zeroizing::new(s)))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// A revoked certificate, for the CRL.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// Its serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: SystemTime,
    /// Why.
    pub reason: RevocationReason,
}

/// RFC 5280 §5.3.1 reasons an operator may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The private key was compromised.
    KeyCompromise,
    /// The user left the space or changed role.
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// No longer needed.
    CessationOfOperation,
}

impl RevocationReason {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
        }
    }

    fn crl_reason(self) -> CrlReason {
        match self {
            RevocationReason::Unspecified => CrlReason::Unspecified,
            RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
            RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
            RevocationReason::Superseded => CrlReason::Superseded,
            RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            RevocationReason::Unspecified,
            RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged,
            RevocationReason::Superseded,
            RevocationReason::CessationOfOperation,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown revocation reason `{s}`; expected unspecified, key-compromise, affiliation-changed, superseded or cessation-of-operation"
            )
        })
    }
}

/// The longest a CRL may be valid: relying parties refetch within a day.
pub const MAX_CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// How far a CRL's thisUpdate is set before now: the default backdate of
/// certificates' notBefore ([`IssuancePolicy::backdate`]), for the same
/// verifiers with slow clocks.
pub const CRL_BACKDATE: Duration = Duration::from_secs(300);

/// The CA with its own P-256 key (the embedded default).
pub struct LocalCa {
    key: CaKey,
    cert: Certificate,
    /// The CA certificate's issuers up to a self-issued root (empty for a
    /// root CA): what a verifier needs besides the CA certificate.
    chain: Vec<Certificate>,
    info: CaInfo,
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
struct ExactProfile {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
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

fn validity(not_before: SystemTime, not_after: SystemTime) -> Result<Validity, IssueError> {
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
            })?,
        };
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
fn check_chain(cert: &Certificate, chain: &[Certificate]) -> Result<(), IssueError> {
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

/// A certificate's serial, as the inventory shows it.
pub fn serial_of(cert: &Certificate) -> Serial {
    Serial::from_serial_number(cert.tbs_certificate().serial_number())
}

/// Read one certificate from PEM, strictly: the `CERTIFICATE` label, strict
/// DER, nothing but whitespace around it (x509-cert's own `from_pem` accepts
/// trailing bytes).
pub fn certificate_from_pem(pem: &str) -> Result<Certificate, String> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| e.to_string())?;
    if label != "CERTIFICATE" {
        return Err(format!("pem label is `{label}`, expected `CERTIFICATE`"));
    }
    Certificate::from_der(&der).map_err(|e| e.to_string())
}

/// PEM of a certificate.
pub fn certificate_pem(cert: &Certificate) -> Result<String, IssueError> {
    cert.to_pem(LineEnding::LF).map_err(enc)
}

/// PEM of a CRL (`X509 CRL` label).
pub fn crl_pem(crl: &CertificateList) -> Result<String, IssueError> {
    let der = crl.to_der().map_err(enc)?;
    der::pem::encode_string("X509 CRL", LineEnding::LF, &der).map_err(enc)
}
