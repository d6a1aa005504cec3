//! CSR validation: outside bytes in, a [`ValidatedCsr`] or a refusal out.
//!
//! A CSR contributes exactly two things to a certificate: a public key and
//! the proof that the requester holds its private key. Everything else in it
//! (subject, requested extensions) is read only to be bounded, refused when
//! malformed, and reported as ignored — never copied. Every refusal has a
//! stable code ([`CsrError::code`]) that the CLI prints and JSON carries.
//!
//! Order of checks: size cap before any parsing; envelope (PEM label, no
//! trailing bytes); strict DER (the `der` crate refuses BER: indefinite
//! lengths, non-minimal lengths and integers; the signed request info and
//! the requested extensions must also equal their own re-encoding, which
//! refuses an explicit DEFAULT and an unsorted SET OF); version; subject size; key
//! algorithm and parameters (the key then re-encoded in its one canonical
//! form, see [`KeyFingerprint`]); signature algorithm pinned to the key type;
//! signature over the exact `certificationRequestInfo` bytes that were
//! received; requested extensions (duplicates refused, dangerous ones noted).

use std::borrow::Cow;
use std::fmt;

use der::asn1::{AnyRef, BitString, ObjectIdentifier};
use der::{Decode, Encode, Reader, Sequence, SliceReader, Tag, Tagged};
use p256::elliptic_curve::sec1::ToSec1Point;
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectAltName};
use x509_cert::request::CertReqInfo;

use crate::Code;
use crate::oids;

/// Limits for CSR validation. The defaults are written down here and only
/// here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsrLimits {
    /// Largest accepted input (PEM or DER), checked before parsing. A
    /// RSA-4096 CSR with a long subject is under 2 KiB of DER, under 3 KiB
    /// of PEM.
    pub max_bytes: usize,
    /// Largest accepted DER encoding of the CSR's subject name.
    pub max_subject_bytes: usize,
}

impl Default for CsrLimits {
    fn default() -> Self {
        CsrLimits {
            max_bytes: 8 * 1024,
            max_subject_bytes: 1024,
        }
    }
}

/// Why a CSR was refused. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Nothing was given.
    #[error("csr is empty")]
    Empty,
    /// Over the size cap (checked before parsing).
    #[error("csr is {}more than the {max}-byte limit", size_text(*.size))]
    TooLarge {
        /// Input size, when known (a reader that stops one byte over the
        /// cap knows only that it is over).
        size: Option<usize>,
        /// The cap.
        max: usize,
    },
    /// The PEM armour is broken.
    #[error("csr pem is malformed: {detail}")]
    BadPem {
        /// What the PEM decoder said.
        detail: String,
    },
    /// PEM with a label other than `CERTIFICATE REQUEST`.
    #[error("csr pem label is `{label}`, expected `CERTIFICATE REQUEST`")]
    WrongPemLabel {
        /// The label found.
        label: String,
    },
    /// Bytes after the request (DER) or after the PEM end line.
    #[error("csr has {count} trailing bytes after the request")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Not a strict-DER PKCS#10 structure.
    #[error("csr is not a valid DER certification request: {detail}")]
    Malformed {
        /// What the decoder said.
        detail: String,
    },
    /// PKCS#10 version other than 0 (v1).
    #[error("csr version is {version}, only 0 (v1) is defined")]
    BadVersion {
        /// The version found.
        version: i64,
    },
    /// The subject name is larger than allowed.
    #[error("csr subject is {size} bytes, more than the {max}-byte limit")]
    SubjectTooLarge {
        /// DER size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// A key algorithm other than EC or RSA (DSA, Ed25519, RSA-PSS keys, ...).
    #[error("csr key algorithm {algorithm} is not accepted; use EC P-256/P-384 or RSA 2048-4096")]
    UnsupportedKey {
        /// The key algorithm OID.
        algorithm: String,
    },
    /// An EC key on a curve other than P-256 or P-384.
    #[error("csr key curve {curve} is not accepted; use P-256 or P-384")]
    UnsupportedCurve {
        /// The curve OID (or "absent").
        curve: String,
    },
    /// An EC key with explicit (specifiedCurve) parameters instead of a
    /// named curve: explicit parameters let a requester define its own
    /// curve (CVE-2020-0601).
    #[error("csr ec key uses explicit curve parameters; only named curves are accepted")]
    ExplicitCurveParameters,
    /// The public key does not decode (a point not on the curve, a broken
    /// RSA key).
    #[error("csr public key is invalid: {detail}")]
    InvalidKey {
        /// Why.
        detail: String,
    },
    /// RSA modulus outside 2048–4096 bits.
    #[error("csr rsa key is {bits} bits; accepted: 2048 to 4096")]
    RsaKeySize {
        /// Modulus size.
        bits: usize,
    },
    /// RSA public exponent other than 65537.
    #[error("csr rsa public exponent is {exponent}; only 65537 is accepted")]
    RsaExponent {
        /// The exponent (hex if large).
        exponent: String,
    },
    /// Signed with a broken hash (MD2, MD5, SHA-1).
    #[error("csr is signed with {algorithm}, a weak hash; use SHA-256 or stronger")]
    WeakHash {
        /// The signature algorithm name.
        algorithm: String,
    },
    /// A signature algorithm eos-sec does not accept (RSA-PSS, DSA, ...).
    #[error("csr signature algorithm {algorithm} is not accepted")]
    UnsupportedSignatureAlgorithm {
        /// The algorithm OID.
        algorithm: String,
    },
    /// The signature algorithm does not belong to the key's type, or has
    /// parameters it must not have.
    #[error("csr signature algorithm {signature} does not match its {key} key")]
    SignatureAlgorithmMismatch {
        /// The signature algorithm.
        signature: String,
        /// The key type.
        key: String,
    },
    /// The proof of possession failed.
    #[error("csr signature does not verify: the requester has not proven it holds the private key")]
    BadSignature,
    /// The same extension requested twice (or two extensionRequest
    /// attributes): which one would a lenient CA honour?
    #[error("csr requests extension {oid} more than once")]
    DuplicateExtension {
        /// The extension OID.
        oid: String,
    },
    /// A requested extension that does not decode.
    #[error("csr requested extension {oid} is malformed: {detail}")]
    MalformedExtension {
        /// The extension OID.
        oid: String,
        /// Why.
        detail: String,
    },
    /// The CSR's key is the CA's own key.
    #[error("csr key is the CA's own key")]
    CaKey,
    /// The CSR's key is already bound to another account.
    #[error("csr key {fingerprint} is already bound to {space}/{user}")]
    KeyReuse {
        /// The key fingerprint.
        fingerprint: String,
        /// The other account's space.
        space: String,
        /// The other account's user.
        user: String,
    },
}

impl CsrError {
    /// The stable refusal code, for scripts and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            CsrError::Empty => Code::CsrEmpty.as_str(),
            CsrError::TooLarge { .. } => Code::CsrTooLarge.as_str(),
            CsrError::BadPem { .. } => Code::CsrBadPem.as_str(),
            CsrError::WrongPemLabel { .. } => Code::CsrWrongPemLabel.as_str(),
            CsrError::TrailingBytes { .. } => Code::CsrTrailingBytes.as_str(),
            CsrError::Malformed { .. } => Code::CsrMalformed.as_str(),
            CsrError::BadVersion { .. } => Code::CsrBadVersion.as_str(),
            CsrError::SubjectTooLarge { .. } => Code::CsrSubjectTooLarge.as_str(),
            CsrError::UnsupportedKey { .. } => Code::CsrUnsupportedKey.as_str(),
            CsrError::UnsupportedCurve { .. } => Code::CsrUnsupportedCurve.as_str(),
            CsrError::ExplicitCurveParameters => Code::CsrExplicitCurveParams.as_str(),
            CsrError::InvalidKey { .. } => Code::CsrInvalidKey.as_str(),
            CsrError::RsaKeySize { .. } => Code::CsrRsaKeySize.as_str(),
            CsrError::RsaExponent { .. } => Code::CsrRsaExponent.as_str(),
            CsrError::WeakHash { .. } => Code::CsrWeakHash.as_str(),
            CsrError::UnsupportedSignatureAlgorithm { .. } => {
                Code::CsrUnsupportedSignatureAlgorithm.as_str()
            }
            CsrError::SignatureAlgorithmMismatch { .. } => {
                Code::CsrSignatureAlgorithmMismatch.as_str()
            }
            CsrError::BadSignature => Code::CsrBadSignature.as_str(),
            CsrError::DuplicateExtension { .. } => Code::CsrDuplicateExtension.as_str(),
            CsrError::MalformedExtension { .. } => Code::CsrMalformedExtension.as_str(),
            CsrError::CaKey => Code::CsrCaKey.as_str(),
            CsrError::KeyReuse { .. } => Code::CsrKeyReuse.as_str(),
        }
    }
}

fn not_der(what: &str) -> CsrError {
    malformed(format!(
        "{what} is not in DER (a DEFAULT value written out, or a SET OF out of order)"
    ))
}

fn size_text(size: Option<usize>) -> String {
    size.map(|n| format!("{n} bytes, ")).unwrap_or_default()
}

fn malformed(e: impl fmt::Display) -> CsrError {
    CsrError::Malformed {
        detail: e.to_string(),
    }
}

/// The accepted key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyKind {
    /// EC on NIST P-256.
    P256,
    /// EC on NIST P-384.
    P384,
    /// RSA with e = 65537.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::P256 => f.write_str("ec-p256"),
            KeyKind::P384 => f.write_str("ec-p384"),
            KeyKind::Rsa { bits } => write!(f, "rsa-{bits}"),
        }
    }
}

/// SHA-256 of a public key's canonical DER `SubjectPublicKeyInfo`: what the
/// inventory binds to an account, what the CA-key check compares. Displayed
/// as `sha256:<hex>`.
///
/// One key has one fingerprint. An EC point may be sent compressed or
/// uncompressed (SEC 1 §2.3.3), so the DER a CSR carries is not the key's
/// identity: comparing it would let one key be certified for two accounts,
/// or the CA's own key for a client. Keys eos-sec accepts are therefore
/// re-encoded before anything is derived from them (the validator does it
/// once, see [`ValidatedCsr::public_key`]): EC points uncompressed, RSA keys
/// as the minimal PKCS#1 `RSAPublicKey` (strict DER leaves one encoding).
/// The certificate carries that canonical form too, never the form
/// received: RFC 5480 §2.2 makes the uncompressed form the one every
/// implementation MUST support (compressed is a MAY), and one key then has
/// one subjectKeyIdentifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint([u8; 32]);

impl KeyFingerprint {
    /// Fingerprint of a public key, canonicalised first when it is a key
    /// eos-sec accepts in a CSR (any other key, such as a P-521 or RSA-8192
    /// CA key, is hashed as given: no CSR key can equal it).
    pub fn of(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyFingerprint, der::Error> {
        match check_key(spki) {
            Ok(key) => Self::of_canonical(&key.spki),
            Err(_) => Ok(Self::of_der(&spki.to_der()?)),
        }
    }

    fn of_canonical(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyFingerprint, der::Error> {
        Ok(Self::of_der(&spki.to_der()?))
    }

    /// Fingerprint of DER `SubjectPublicKeyInfo` bytes, taken as they are
    /// (the caller vouches that they are canonical).
    pub fn of_der(spki_der: &[u8]) -> KeyFingerprint {
        KeyFingerprint(sha2::Sha256::digest(spki_der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Something the CSR asked for that will not be in the certificate. Not a
/// refusal: the certificate's contents come from the account record. The
/// caller should log these (a CA:true request is worth an audit entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum IgnoredRequest {
    /// basicConstraints with cA TRUE: someone asked to become a CA.
    CaTrue,
    /// keyUsage keyCertSign or cRLSign.
    CaKeyUsage,
    /// subjectAltName entries (names, wildcards, other spaces' URIs).
    SubjectAltName {
        /// How many names were asked for.
        count: usize,
    },
    /// Any other requested extension.
    Extension {
        /// Its OID.
        oid: String,
    },
    /// The CSR's subject (identity comes from the account record).
    Subject {
        /// The subject as RFC 4514 text, bounded by the subject size limit.
        subject: String,
    },
}

impl IgnoredRequest {
    /// Whether the request tried to obtain CA powers.
    pub fn is_ca_request(&self) -> bool {
        matches!(self, IgnoredRequest::CaTrue | IgnoredRequest::CaKeyUsage)
    }
}

/// A CSR that passed every check. Only [`validate_csr`] makes one, so a
/// function that takes a `ValidatedCsr` cannot be reached with an unchecked
/// key or a failed proof of possession.
#[derive(Debug, Clone)]
pub struct ValidatedCsr {
    der: Vec<u8>,
    public_key: SubjectPublicKeyInfoOwned,
    key_kind: KeyKind,
    fingerprint: KeyFingerprint,
    ignored: Vec<IgnoredRequest>,
}

impl ValidatedCsr {
    /// The CSR as received, in DER (AWS Private CA wants the CSR itself).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The requester's public key in its canonical encoding (see
    /// [`KeyFingerprint`]): the only thing that reaches the certificate.
    pub fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.public_key
    }

    /// The key type.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// SHA-256 of the canonical DER public key.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// What the CSR asked for that the certificate will not contain.
    pub fn ignored(&self) -> &[IgnoredRequest] {
        &self.ignored
    }

    /// Whether the CSR asked for CA powers (to be logged).
    pub fn requested_ca(&self) -> bool {
        self.ignored.iter().any(IgnoredRequest::is_ca_request)
    }
}

/// The outer PKCS#10 structure with the request info kept as raw bytes, so
/// the signature is checked over exactly what was received.
#[derive(Sequence)]
struct RawCertReq<'a> {
    info: AnyRef<'a>,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// Validate a CSR (PEM with the `CERTIFICATE REQUEST` label, or DER).
pub fn validate_csr(input: &[u8], limits: &CsrLimits) -> Result<ValidatedCsr, CsrError> {
    if input.len() > limits.max_bytes {
        return Err(CsrError::TooLarge {
            size: Some(input.len()),
            max: limits.max_bytes,
        });
    }
    let der = unwrap_envelope(input)?;
    validate_der(der.as_ref(), limits)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Text before a PEM block: what `openssl req -text` writes. RFC 7468 §2
/// tells parsers to ignore it; it must be text (UTF-8 without control
/// characters but whitespace), which DER never is: a CSR's DER starts with
/// `30 81` or `30 82`, and neither 0x81 nor 0x82 begins a UTF-8 character.
fn is_explanatory_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|t| t.chars().all(|c| !c.is_control() || is_space_char(c)))
}

fn is_space_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_space)
}

/// PEM or DER in, DER out. Explanatory text before a PEM block is ignored
/// (RFC 7468 §2), whitespace after the end line too; anything else after
/// it is refused (pem-rfc7468 alone would accept it).
fn unwrap_envelope(input: &[u8]) -> Result<Cow<'_, [u8]>, CsrError> {
    let start = input.iter().position(|b| !is_space(*b));
    let Some(start) = start else {
        return Err(CsrError::Empty);
    };
    let mut body = input.get(start..).unwrap_or_default();
    if let Some(at) = find(body, b"-----BEGIN ")
        && at > 0
        && body.get(..at).is_some_and(is_explanatory_text)
    {
        body = body.get(at..).unwrap_or_default();
    }
    if !body.starts_with(b"-----BEGIN ") {
        // DER: whitespace before it would be trailing garbage of another
        // kind; refuse rather than guess.
        if start != 0 {
            return Err(malformed("input is neither PEM nor DER"));
        }
        return Ok(Cow::Borrowed(input));
    }
    const END: &[u8] = b"-----END ";
    let end_line = find(body, END).ok_or_else(|| CsrError::BadPem {
        detail: "no END line".to_owned(),
    })?;
    let after_end = body.get(end_line + END.len()..).unwrap_or_default();
    let close = find(after_end, b"-----").ok_or_else(|| CsrError::BadPem {
        detail: "unterminated END line".to_owned(),
    })?;
    let pem_len = end_line + END.len() + close + 5;
    let rest = body.get(pem_len..).unwrap_or_default();
    let trailing = rest.iter().filter(|b| !is_space(**b)).count();
    if trailing > 0 {
        return Err(CsrError::TrailingBytes { count: trailing });
    }
    let pem = body.get(..pem_len).unwrap_or_default();
    let (label, der) = der::pem::decode_vec(pem).map_err(|e| CsrError::BadPem {
        detail: e.to_string(),
    })?;
    if label != "CERTIFICATE REQUEST" {
        return Err(CsrError::WrongPemLabel {
            label: label.chars().take(64).collect(),
        });
    }
    Ok(Cow::Owned(der))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn validate_der(der: &[u8], limits: &CsrLimits) -> Result<ValidatedCsr, CsrError> {
    if der.is_empty() {
        return Err(CsrError::Empty);
    }
    let raw = decode_outer(der)?;
    if raw.info.tag() != Tag::Sequence {
        return Err(malformed("certificationRequestInfo is not a SEQUENCE"));
    }
    let info_der = raw.info.to_der().map_err(malformed)?;
    check_version(raw.info.value())?;
    let info = CertReqInfo::from_der(&info_der).map_err(malformed)?;
    // The decoder lets two BER forms through: an explicit DEFAULT value and
    // a SET OF out of order. Encoding what was decoded gives the one DER
    // form; the signed bytes must be exactly that.
    if info.to_der().map_err(malformed)? != info_der {
        return Err(not_der("certificationRequestInfo"));
    }

    let subject_len = info.subject.to_der().map_err(malformed)?.len();
    if subject_len > limits.max_subject_bytes {
        return Err(CsrError::SubjectTooLarge {
            size: subject_len,
            max: limits.max_subject_bytes,
        });
    }

    let key = verify_signed(&info.public_key, &raw.algorithm, &info_der, &raw.signature)?;

    let mut ignored = requested_extensions(&info)?;
    if !info.subject.as_ref().is_empty() {
        ignored.push(IgnoredRequest::Subject {
            subject: info.subject.to_string(),
        });
    }
    let fingerprint = KeyFingerprint::of_canonical(&key.spki).map_err(malformed)?;
    Ok(ValidatedCsr {
        der: der.to_vec(),
        public_key: key.spki,
        key_kind: key.kind,
        fingerprint,
        ignored,
    })
}

fn decode_outer(der: &[u8]) -> Result<RawCertReq<'_>, CsrError> {
    let mut reader = SliceReader::new(der).map_err(malformed)?;
    let raw = RawCertReq::decode(&mut reader).map_err(malformed)?;
    let left = reader.remaining_len();
    if !left.is_zero() {
        return Err(CsrError::TrailingBytes {
            count: usize::try_from(u32::from(left)).unwrap_or(usize::MAX),
        });
    }
    Ok(raw)
}

/// The version is checked on its own so that a v2 request is refused as
/// such, not as an undecodable structure.
fn check_version(info_value: &[u8]) -> Result<(), CsrError> {
    let mut reader = SliceReader::new(info_value).map_err(malformed)?;
    let version = i64::decode(&mut reader).map_err(malformed)?;
    if version != 0 {
        return Err(CsrError::BadVersion { version });
    }
    Ok(())
}

/// A public key that passed [`check_key`], re-encoded canonically.
pub(crate) struct CheckedKey {
    pub(crate) kind: KeyKind,
    /// The key in its one encoding (see [`KeyFingerprint`]).
    pub(crate) spki: SubjectPublicKeyInfoOwned,
}

/// Check a key against what eos-sec accepts and re-encode it canonically.
/// The algorithm identifier is kept as received: strict DER leaves one
/// encoding of an OID and of NULL, and the checks below allow nothing else.
fn check_key(spki: &SubjectPublicKeyInfoOwned) -> Result<CheckedKey, CsrError> {
    let (kind, key) = check_key_bits(spki)?;
    let subject_public_key =
        BitString::from_bytes(&key).map_err(|e| invalid_key(&e.to_string()))?;
    Ok(CheckedKey {
        kind,
        spki: SubjectPublicKeyInfoOwned {
            algorithm: spki.algorithm.clone(),
            subject_public_key,
        },
    })
}

/// The key's kind and its canonical subjectPublicKey bits: the SEC 1 point
/// uncompressed, or the DER `RSAPublicKey` encoded again.
fn check_key_bits(spki: &SubjectPublicKeyInfoOwned) -> Result<(KeyKind, Vec<u8>), CsrError> {
    let alg = &spki.algorithm;
    if alg.oid == oids::EC_PUBLIC_KEY {
        let params = alg.parameters.as_ref().ok_or(CsrError::UnsupportedCurve {
            curve: "absent".to_owned(),
        })?;
        if params.tag() == Tag::Sequence {
            return Err(CsrError::ExplicitCurveParameters);
        }
        let curve: ObjectIdentifier =
            params.decode_as().map_err(|_| CsrError::UnsupportedCurve {
                curve: format!("{:?} parameters", params.tag()),
            })?;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| invalid_key("public key bit string has unused bits"))?;
        return if curve == oids::SECP256R1 {
            let key = p256::PublicKey::from_sec1_bytes(point)
                .map_err(|_| invalid_key("not a point on P-256"))?;
            Ok((KeyKind::P256, key.to_sec1_point(false).as_bytes().to_vec()))
        } else if curve == oids::SECP384R1 {
            let key = p384::PublicKey::from_sec1_bytes(point)
                .map_err(|_| invalid_key("not a point on P-384"))?;
            Ok((KeyKind::P384, key.to_sec1_point(false).as_bytes().to_vec()))
        } else {
            Err(CsrError::UnsupportedCurve {
                curve: oids::name(&curve),
            })
        };
    }
    if alg.oid == oids::RSA_ENCRYPTION {
        // RFC 4055 §1.2: the parameters field MUST be NULL.
        if !alg.parameters.as_ref().is_some_and(|p| p.is_null()) {
            return Err(invalid_key("rsaEncryption parameters must be NULL"));
        }
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| invalid_key("public key bit string has unused bits"))?;
        let pk = rsa::pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(bytes)
            .map_err(|e| invalid_key(&format!("rsa public key: {e}")))?;
        let bits = uint_bits(pk.modulus.as_bytes());
        if !(2048..=4096).contains(&bits) {
            return Err(CsrError::RsaKeySize { bits });
        }
        let e = pk.public_exponent.as_bytes();
        if e != [0x01, 0x00, 0x01] {
            return Err(CsrError::RsaExponent {
                exponent: exponent_text(e),
            });
        }
        let canonical = pk
            .to_der()
            .map_err(|e| invalid_key(&format!("rsa public key: {e}")))?;
        return Ok((KeyKind::Rsa { bits }, canonical));
    }
    Err(CsrError::UnsupportedKey {
        algorithm: oids::name(&alg.oid),
    })
}

fn invalid_key(detail: &str) -> CsrError {
    CsrError::InvalidKey {
        detail: detail.to_owned(),
    }
}

fn uint_bits(bytes: &[u8]) -> usize {
    let first = bytes.iter().position(|b| *b != 0);
    match first {
        None => 0,
        Some(i) => {
            let lead = bytes.get(i).copied().unwrap_or(0);
            (bytes.len() - i - 1) * 8 + (8 - lead.leading_zeros() as usize)
        }
    }
}

fn exponent_text(e: &[u8]) -> String {
    if e.len() <= 8 {
        let mut v: u64 = 0;
        for b in e {
            v = (v << 8) | u64::from(*b);
        }
        v.to_string()
    } else {
        format!("0x{}", hex::encode(e))
    }
}

/// The digests a signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// Pin the signature algorithm to the key type: ECDSA with SHA-256 or
/// SHA-384 for EC keys (what `openssl req` makes for either curve; SHA-512
/// with ECDSA is refused), RSA PKCS#1 v1.5 with SHA-256/384/512 for RSA
/// keys. The parameters must be what RFC 5758 §3.2 (ECDSA: absent) and
/// RFC 4055 §5 (RSA: NULL) say.
fn check_signature_algorithm(
    alg: &AlgorithmIdentifierOwned,
    key: KeyKind,
) -> Result<Hash, CsrError> {
    if oids::WEAK_SIGNATURES.contains(&alg.oid) {
        return Err(CsrError::WeakHash {
            algorithm: oids::name(&alg.oid),
        });
    }
    let (is_ec, hash) = match alg.oid {
        o if o == oids::ECDSA_WITH_SHA256 => (true, Hash::Sha256),
        o if o == oids::ECDSA_WITH_SHA384 => (true, Hash::Sha384),
        o if o == oids::ECDSA_WITH_SHA512 => (true, Hash::Sha512),
        o if o == oids::SHA256_WITH_RSA => (false, Hash::Sha256),
        o if o == oids::SHA384_WITH_RSA => (false, Hash::Sha384),
        o if o == oids::SHA512_WITH_RSA => (false, Hash::Sha512),
        other => {
            return Err(CsrError::UnsupportedSignatureAlgorithm {
                algorithm: oids::name(&other),
            });
        }
    };
    let matches_key = match key {
        KeyKind::P256 | KeyKind::P384 => is_ec && hash != Hash::Sha512,
        KeyKind::Rsa { .. } => !is_ec,
    };
    let params_ok = if is_ec {
        alg.parameters.is_none()
    } else {
        alg.parameters.as_ref().is_none_or(|p| p.is_null())
    };
    if !matches_key || !params_ok {
        return Err(CsrError::SignatureAlgorithmMismatch {
            signature: oids::name(&alg.oid),
            key: key.to_string(),
        });
    }
    Ok(hash)
}

/// Check `key` and `algorithm` as for a CSR and verify `signature` over
/// `signed`: the proof of possession of a CSR, and the issuer's signature on
/// a certificate a remote CA returned.
pub(crate) fn verify_signed(
    key: &SubjectPublicKeyInfoOwned,
    algorithm: &AlgorithmIdentifierOwned,
    signed: &[u8],
    signature: &BitString,
) -> Result<CheckedKey, CsrError> {
    let checked = check_key(key)?;
    let hash = check_signature_algorithm(algorithm, checked.kind)?;
    verify_signature(&checked, hash, signed, signature)?;
    Ok(checked)
}

/// Verify a signature with ring (the constant-time assembly
/// implementations rustls uses here too). The key was already checked by
/// [`check_key`]; ring checks the point or the RSA key again itself. ring
/// takes EC points uncompressed only, and RSA keys as PKCS#1
/// `RSAPublicKey`: the canonical key is both.
fn verify_signature(
    checked: &CheckedKey,
    hash: Hash,
    signed: &[u8],
    signature: &BitString,
) -> Result<(), CsrError> {
    let key = checked.kind;
    use ring::signature as sig;
    let signature = signature.as_bytes().ok_or(CsrError::BadSignature)?;
    let alg: &dyn sig::VerificationAlgorithm = match (key, hash) {
        (KeyKind::P256, Hash::Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
        (KeyKind::P256, Hash::Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
        (KeyKind::P384, Hash::Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
        (KeyKind::P384, Hash::Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
        (KeyKind::Rsa { .. }, Hash::Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (KeyKind::Rsa { .. }, Hash::Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (KeyKind::Rsa { .. }, Hash::Sha512) => &sig::RSA_PKCS1_2048_8192_SHA512,
        // check_signature_algorithm lets no other pair through.
        _ => return Err(CsrError::BadSignature),
    };
    sig::UnparsedPublicKey::new(alg, checked.spki.subject_public_key.raw_bytes())
        .verify(signed, signature)
        .map_err(|_| CsrError::BadSignature)
}

/// Read the extensionRequest attribute: refuse duplicates and malformed
/// values of the extensions we look at, and note what will be ignored.
fn requested_extensions(info: &CertReqInfo) -> Result<Vec<IgnoredRequest>, CsrError> {
    let mut ignored = Vec::new();
    let mut seen: Vec<ObjectIdentifier> = Vec::new();
    let mut seen_request = false;
    for attr in info.attributes.iter() {
        if attr.oid != oids::EXTENSION_REQUEST {
            continue;
        }
        if seen_request || attr.values.len() != 1 {
            return Err(CsrError::DuplicateExtension {
                oid: "extensionRequest attribute".to_owned(),
            });
        }
        seen_request = true;
        for value in attr.values.iter() {
            let exts =
                value
                    .decode_as::<Vec<Extension>>()
                    .map_err(|e| CsrError::MalformedExtension {
                        oid: "extensionRequest".to_owned(),
                        detail: e.to_string(),
                    })?;
            // Inside the attribute's value (kept as raw bytes above), the
            // same round trip: `critical FALSE` written out is BER.
            if exts.to_der().map_err(malformed)? != value.to_der().map_err(malformed)? {
                return Err(not_der("extensionRequest"));
            }
            for ext in exts {
                if seen.contains(&ext.extn_id) {
                    return Err(CsrError::DuplicateExtension {
                        oid: oids::name(&ext.extn_id),
                    });
                }
                seen.push(ext.extn_id);
                ignored.push(classify_extension(&ext)?);
            }
        }
    }
    Ok(ignored)
}

fn classify_extension(ext: &Extension) -> Result<IgnoredRequest, CsrError> {
    let bad = |e: der::Error| CsrError::MalformedExtension {
        oid: oids::name(&ext.extn_id),
        detail: e.to_string(),
    };
    let value = ext.extn_value.as_bytes();
    if ext.extn_id == oids::BASIC_CONSTRAINTS {
        let bc = BasicConstraints::from_der(value).map_err(bad)?;
        if bc.ca {
            return Ok(IgnoredRequest::CaTrue);
        }
    } else if ext.extn_id == oids::KEY_USAGE {
        let ku = KeyUsage::from_der(value).map_err(bad)?;
        if ku.0.contains(KeyUsages::KeyCertSign) || ku.0.contains(KeyUsages::CRLSign) {
            return Ok(IgnoredRequest::CaKeyUsage);
        }
    } else if ext.extn_id == oids::SUBJECT_ALT_NAME {
        let san = SubjectAltName::from_der(value).map_err(bad)?;
        return Ok(IgnoredRequest::SubjectAltName { count: san.0.len() });
    }
    Ok(IgnoredRequest::Extension {
        oid: oids::name(&ext.extn_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_of_a_modulus() {
        assert_eq!(uint_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(uint_bits(&[0x01]), 1);
        assert_eq!(uint_bits(&[]), 0);
    }

    #[test]
    fn exponent_shown_in_decimal() {
        assert_eq!(exponent_text(&[3]), "3");
        assert_eq!(exponent_text(&[1, 0, 1]), "65537");
    }

    #[test]
    fn only_whitespace_is_empty() {
        assert_eq!(
            validate_csr(b"  \n", &CsrLimits::default()).unwrap_err(),
            CsrError::Empty
        );
    }
}
