//! The certificate gate at the edge: the CA's trust bundle and current CRL
//! carried to where AWS checks client certificates — an ALB trust store
//! (bundle + revocation files, both read from S3) and an API Gateway custom
//! domain's truststore (a bundle in S3; API Gateway checks no CRL).
//!
//! This module owns the rules; a [`GateBackend`] (AWS: `eos_aws::gate`)
//! owns the calls:
//!
//! - objects are **content-addressed** (`<prefix><kind>/<sha256>.pem`), so
//!   an object a trust store points at is never overwritten: a new bundle
//!   or CRL is a new key;
//! - a trust store's revocation list is made **equal to the CA's current
//!   CRL**: the new CRL is added *before* the superseded ones are removed
//!   (a CA's CRL lists every unexpired revocation, so the new one covers
//!   the old and there is never a moment without one), and every other
//!   revocation file is removed — the trust stores named in `[gate]`
//!   belong to eos-sec;
//! - every change is **read back** before it counts as done;
//! - the ELBv2 limits are checked **before** any call ([`check_material`]).

use std::fmt;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// ELBv2 limits on trust stores (Elastic Load Balancing, "Quotas for your
/// Application Load Balancers", section "Trust stores" and "Certificates").
pub mod limits {
    /// CA certificates per trust store.
    pub const CA_CERTIFICATES: usize = 25;
    /// Size of one CA certificate (DER), in bytes: 16 KB.
    pub const CA_CERTIFICATE_BYTES: usize = 16 * 1024;
    /// Size of one revocation file, in bytes: 50 MB.
    pub const REVOCATION_FILE_BYTES: usize = 50 * 1024 * 1024;
    /// Revocation entries per trust store (all files together).
    pub const REVOCATION_ENTRIES: u64 = 500_000;
    /// Revocation files per trust store. eos-sec holds at most two at once
    /// (the new CRL, briefly beside the one it supersedes).
    pub const REVOCATION_FILES: usize = 30;
    /// Trust store names: 1-32 of `A-Za-z0-9` in hyphen-separated words
    /// (ELBv2 API Reference, "CreateTrustStore").
    pub const NAME_MAX: usize = 32;
}

/// The certificate lifetime above which a space behind API Gateway (which
/// checks no CRL) is warned about: a revoked certificate keeps working
/// there until it expires.
pub const API_GATEWAY_MAX_LIFETIME_HOURS: u64 = 72;

/// What went wrong publishing or reading the certificate gate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The bundle or CRL is unusable or over an ELBv2 limit (nothing was
    /// sent).
    #[error("{what}: {message}")]
    Material {
        /// "CA bundle", "CRL", "trust store name".
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A resource eos-sec does not create (an API Gateway domain) is missing.
    #[error("{what} {name} does not exist")]
    Missing {
        /// "API Gateway domain", "ALB listener".
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// What was read back after a change is not what was written.
    #[error("{what} {name}: read back {found}, expected {expected}")]
    ReadBack {
        /// "trust store", "API Gateway domain", "S3 object".
        what: &'static str,
        /// Its name.
        name: String,
        /// What the read returned.
        found: String,
        /// What was written.
        expected: String,
    },
    /// The backend (AWS) failed.
    #[error("{0}")]
    Backend(String),
}

impl GateError {
    /// True when the error is about what the user supplied (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, GateError::Material { .. } | GateError::Missing { .. })
    }
}

fn material(what: &'static str, message: impl Into<String>) -> GateError {
    GateError::Material {
        what,
        message: message.into(),
    }
}

/// Lower-case hex SHA-256 of `body`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// What kind of trust material an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A PEM CA bundle.
    Bundle,
    /// A PEM CRL.
    Crl,
}

impl ObjectKind {
    /// `bundle` or `crl`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Bundle => "bundle",
            ObjectKind::Crl => "crl",
        }
    }
}

/// The content address of `body`: `<prefix><kind>/<sha256>.pem`. Equal
/// bodies have equal keys, different bodies different keys, so writing a
/// key never changes what an existing reference points at.
pub fn object_key(prefix: &str, kind: ObjectKind, body: &[u8]) -> String {
    format!("{prefix}{}/{}.pem", kind.as_str(), sha256_hex(body))
}

/// An object in the bucket, as stored (and read back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The S3 version id when the bucket is versioned.
    pub version: Option<String>,
    /// SHA-256 of the body (hex).
    pub sha256: String,
}

impl ObjectRef {
    /// `s3://bucket/key`, the form API Gateway's `TruststoreUri` takes.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The CA's current CRL, with what the gate needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlFile {
    /// Its CRL number.
    pub number: u64,
    /// thisUpdate (RFC 3339).
    pub this_update: String,
    /// nextUpdate (RFC 3339).
    pub next_update: String,
    /// The PEM file.
    #[serde(skip)]
    pub pem: Vec<u8>,
}

/// The CA's trust material, checked against the ELBv2 limits.
#[derive(Debug, Clone)]
pub struct TrustMaterial {
    bundle: Vec<u8>,
    certificates: usize,
    crl: Option<(CrlFile, u64)>,
}

impl TrustMaterial {
    /// The PEM bundle.
    pub fn bundle(&self) -> &[u8] {
        &self.bundle
    }
    /// CA certificates in the bundle.
    pub fn certificates(&self) -> usize {
        self.certificates
    }
    /// The CRL and its number of revoked entries.
    pub fn crl(&self) -> Option<(&CrlFile, u64)> {
        self.crl.as_ref().map(|(c, n)| (c, *n))
    }
}

/// Check a PEM bundle and CRL against what an ALB trust store accepts,
/// before anything is sent: at least one and at most
/// [`limits::CA_CERTIFICATES`] certificates, each at most
/// [`limits::CA_CERTIFICATE_BYTES`]; a CRL that parses, at most
/// [`limits::REVOCATION_FILE_BYTES`] and [`limits::REVOCATION_ENTRIES`]
/// entries.
pub fn check_material(bundle: &[u8], crl: Option<CrlFile>) -> Result<TrustMaterial, GateError> {
    let mut certificates = 0;
    for item in CertificateDer::pem_slice_iter(bundle) {
        let der = item.map_err(|e| material("CA bundle", format!("not PEM: {e}")))?;
        certificates += 1;
        if der.len() > limits::CA_CERTIFICATE_BYTES {
            return Err(material(
                "CA bundle",
                format!(
                    "certificate {certificates} is {} bytes; an ALB trust store takes at most {} per CA certificate",
                    der.len(),
                    limits::CA_CERTIFICATE_BYTES
                ),
            ));
        }
    }
    if certificates == 0 {
        return Err(material("CA bundle", "no CERTIFICATE found"));
    }
    if certificates > limits::CA_CERTIFICATES {
        return Err(material(
            "CA bundle",
            format!(
                "{certificates} certificates; an ALB trust store takes at most {}",
                limits::CA_CERTIFICATES
            ),
        ));
    }
    let crl = match crl {
        None => None,
        Some(c) => {
            let entries = crl_entries(&c.pem)?;
            Some((c, entries))
        }
    };
    Ok(TrustMaterial {
        bundle: bundle.to_vec(),
        certificates,
        crl,
    })
}

/// A PEM CRL, parsed.
pub(crate) fn parse_crl(pem: &[u8]) -> Result<x509_cert::crl::CertificateList, GateError> {
    use der::Decode;
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem)
        .map_err(|e| material("CRL", format!("not a PEM X509 CRL: {e}")))?;
    x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der.as_ref())
        .map_err(|e| material("CRL", format!("cannot parse: {e}")))
}

/// Revoked entries in a PEM CRL, checking the ELBv2 size and entry limits.
fn crl_entries(pem: &[u8]) -> Result<u64, GateError> {
    if pem.len() > limits::REVOCATION_FILE_BYTES {
        return Err(material(
            "CRL",
            format!(
                "{} bytes; an ALB revocation file is at most {}",
                pem.len(),
                limits::REVOCATION_FILE_BYTES
            ),
        ));
    }
    let entries = parse_crl(pem)?
        .tbs_cert_list
        .revoked_certificates
        .map_or(0, |r| r.len() as u64);
    if entries > limits::REVOCATION_ENTRIES {
        return Err(material(
            "CRL",
            format!(
                "{entries} revoked entries; an ALB trust store holds at most {}",
                limits::REVOCATION_ENTRIES
            ),
        ));
    }
    Ok(entries)
}

/// Check a trust store name as ELBv2 does (1-32 characters, words of
/// `A-Za-z0-9` joined by single hyphens), so a typo fails before a call.
pub fn check_trust_store_name(name: &str) -> Result<(), GateError> {
    let ok = !name.is_empty()
        && name.len() <= limits::NAME_MAX
        && name
            .split('-')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(material(
            "trust store name",
            format!(
                "`{name}`: 1-{} characters, words of A-Z a-z 0-9 joined by single hyphens",
                limits::NAME_MAX
            ),
        ))
    }
}

/// One revocation file in a trust store, as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The trust store's id for it.
    pub id: i64,
    /// Revoked entries in it.
    pub entries: u64,
}

/// A trust store as read from the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStoreRead {
    /// Its ARN.
    pub arn: String,
    /// `ACTIVE` or `CREATING`.
    pub status: String,
    /// CA certificates in it.
    pub ca_certificates: usize,
    /// Its revocation files.
    pub revocations: Vec<Revocation>,
}

/// An API Gateway custom domain's mutual TLS settings as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRead {
    /// `s3://bucket/key`, when mutual TLS is configured.
    pub truststore_uri: Option<String>,
    /// The S3 object version, when given.
    pub truststore_version: Option<String>,
    /// Warnings API Gateway reported about the truststore.
    pub warnings: Vec<String>,
}

/// An ALB listener's `MutualAuthentication`, as DescribeListeners reports
/// it and ModifyListener takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerAuth {
    /// `off`, `passthrough` or `verify`.
    pub mode: crate::compile::ListenerMode,
    /// The trust store (verify).
    #[serde(default)]
    pub trust_store_arn: Option<String>,
    /// Whether an expired client certificate passes (verify); eos-sec
    /// never sets it.
    #[serde(default)]
    pub ignore_client_certificate_expiry: Option<bool>,
    /// Whether the listener advertises the trust store's CA names (verify).
    #[serde(default)]
    pub advertise_trust_store_ca_names: Option<bool>,
}

impl ListenerAuth {
    /// Mode `off` or `passthrough`, which take no other setting.
    pub fn mode_only(mode: crate::compile::ListenerMode) -> ListenerAuth {
        ListenerAuth {
            mode,
            trust_store_arn: None,
            ignore_client_certificate_expiry: None,
            advertise_trust_store_ca_names: None,
        }
    }

    /// Mode `verify` against `trust_store_arn`, never ignoring expiry.
    pub fn verify(trust_store_arn: &str, advertise_ca_names: bool) -> ListenerAuth {
        ListenerAuth {
            mode: crate::compile::ListenerMode::Verify,
            trust_store_arn: Some(trust_store_arn.to_owned()),
            ignore_client_certificate_expiry: Some(false),
            advertise_trust_store_ca_names: Some(advertise_ca_names),
        }
    }

    /// What a write sends and a read-back is compared on: the verify
    /// settings only in mode `verify` (AWS keeps none in the others), an
    /// absent flag as AWS's default (`false`, `off`).
    pub fn normalized(&self) -> ListenerAuth {
        if self.mode != crate::compile::ListenerMode::Verify {
            return ListenerAuth::mode_only(self.mode);
        }
        ListenerAuth {
            mode: self.mode,
            trust_store_arn: self.trust_store_arn.clone(),
            ignore_client_certificate_expiry: Some(
                self.ignore_client_certificate_expiry.unwrap_or(false),
            ),
            advertise_trust_store_ca_names: Some(
                self.advertise_trust_store_ca_names.unwrap_or(false),
            ),
        }
    }

    /// Equal once both are [normalized](ListenerAuth::normalized).
    pub fn same_as(&self, other: &ListenerAuth) -> bool {
        self.normalized() == other.normalized()
    }
}

impl fmt::Display for ListenerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.normalized();
        f.write_str(n.mode.as_str())?;
        if n.mode == crate::compile::ListenerMode::Verify {
            write!(
                f,
                " (trust store {}, ignore expiry {}, advertise CA names {})",
                n.trust_store_arn.as_deref().unwrap_or("none"),
                n.ignore_client_certificate_expiry.unwrap_or(false),
                if n.advertise_trust_store_ca_names.unwrap_or(false) {
                    "on"
                } else {
                    "off"
                }
            )?;
        }
        Ok(())
    }
}

/// Where the certificate gate lives: an object store, ALB trust stores and
/// listeners, API Gateway domains (AWS: `eos_aws::gate::AwsGate`).
#[allow(async_fn_in_trait)]
pub trait GateBackend {
    /// A stable description of the backend (`aws:eu-west-1`), recorded with
    /// what was published.
    fn gate_backend_id(&self) -> String;

    /// Store `body` under `key` unless an object with that key and body
    /// exists already, and read it back. Never replaces a different body.
    async fn put_object(&self, key: &str, body: &[u8]) -> Result<ObjectRef, GateError>;

    /// The trust store named `name`, with its revocation files; `None` when
    /// it does not exist.
    async fn trust_store(&self, name: &str) -> Result<Option<TrustStoreRead>, GateError>;

    /// Create the trust store `name` from `bundle`; its ARN.
    async fn create_trust_store(&self, name: &str, bundle: &ObjectRef)
    -> Result<String, GateError>;

    /// Replace the trust store's CA bundle with `bundle`.
    async fn modify_trust_store(&self, arn: &str, bundle: &ObjectRef) -> Result<(), GateError>;

    /// Add `crl` as a revocation file; the new file's id and entries.
    async fn add_revocation(&self, arn: &str, crl: &ObjectRef) -> Result<Revocation, GateError>;

    /// Remove the revocation files `ids`.
    async fn remove_revocations(&self, arn: &str, ids: &[i64]) -> Result<(), GateError>;

    /// An API Gateway custom domain's mutual TLS settings; `None` when the
    /// domain does not exist.
    async fn domain(&self, name: &str) -> Result<Option<DomainRead>, GateError>;

    /// Point the domain's truststore at `bundle`.
    async fn set_domain_truststore(&self, name: &str, bundle: &ObjectRef) -> Result<(), GateError>;

    /// An ALB listener's `MutualAuthentication`; `None` when the listener
    /// does not exist.
    async fn listener(&self, arn: &str) -> Result<Option<ListenerAuth>, GateError>;

    /// Set the listener's `MutualAuthentication` to `auth` (sent
    /// [normalized](ListenerAuth::normalized)); nothing else changes.
    async fn set_listener(&self, arn: &str, auth: &ListenerAuth) -> Result<(), GateError>;
}

/// What eos-sec put on a trust store, as recorded after read-back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStoreRecord {
    /// Its ARN.
    pub arn: String,
    /// The bundle object.
    pub bundle: ObjectRef,
    /// The CRL's revocation file, when a CRL was published.
    pub crl: Option<CrlRecord>,
}

/// A CRL as attached to a trust store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlRecord {
    /// CRL number.
    pub number: u64,
    /// thisUpdate (RFC 3339).
    pub this_update: String,
    /// nextUpdate (RFC 3339).
    pub next_update: String,
    /// The object.
    pub object: ObjectRef,
    /// The trust store's revocation id for it.
    pub revocation_id: i64,
    /// Revoked entries.
    pub entries: u64,
}

/// What was done to one target, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum GateStep {
    /// CreateTrustStore.
    CreateTrustStore {
        /// The bundle.
        bundle: String,
    },
    /// ModifyTrustStore.
    ModifyTrustStore {
        /// The new bundle.
        bundle: String,
    },
    /// AddTrustStoreRevocations.
    AddRevocation {
        /// CRL number.
        crl_number: u64,
        /// The new revocation id.
        revocation_id: i64,
    },
    /// RemoveTrustStoreRevocations.
    RemoveRevocations {
        /// The ids removed.
        revocation_ids: Vec<i64>,
    },
    /// UpdateDomainName.
    SetDomainTruststore {
        /// The truststore URI.
        uri: String,
    },
}

impl fmt::Display for GateStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateStep::CreateTrustStore { bundle } => write!(f, "created with bundle {bundle}"),
            GateStep::ModifyTrustStore { bundle } => write!(f, "bundle replaced by {bundle}"),
            GateStep::AddRevocation {
                crl_number,
                revocation_id,
            } => write!(f, "CRL {crl_number} added as revocation {revocation_id}"),
            GateStep::RemoveRevocations { revocation_ids } => {
                let ids: Vec<String> = revocation_ids.iter().map(ToString::to_string).collect();
                write!(f, "superseded revocations {} removed", ids.join(", "))
            }
            GateStep::SetDomainTruststore { uri } => write!(f, "truststore set to {uri}"),
        }
    }
}

/// The published objects of one [`TrustMaterial`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedMaterial {
    /// The bundle object.
    pub bundle: ObjectRef,
    /// The CRL object and its details.
    pub crl: Option<(ObjectRef, CrlFile, u64)>,
}

/// Put the bundle and CRL in the bucket under their content addresses.
pub async fn publish_objects<B: GateBackend>(
    backend: &B,
    prefix: &str,
    material: &TrustMaterial,
) -> Result<PublishedMaterial, GateError> {
    let key = object_key(prefix, ObjectKind::Bundle, material.bundle());
    let bundle = backend.put_object(&key, material.bundle()).await?;
    let crl = match material.crl() {
        None => None,
        Some((crl, entries)) => {
            let key = object_key(prefix, ObjectKind::Crl, &crl.pem);
            let object = backend.put_object(&key, &crl.pem).await?;
            Some((object, crl.clone(), entries))
        }
    };
    Ok(PublishedMaterial { bundle, crl })
}

/// Bring the trust store `name` to `published`: created or modified to the
/// bundle, its revocation files made equal to the CRL (the new one added
/// before the superseded ones are removed), then read back. `previous` is
/// what eos-sec recorded for it last time; the returned record replaces it.
pub async fn sync_trust_store<B: GateBackend>(
    backend: &B,
    name: &str,
    published: &PublishedMaterial,
    material: &TrustMaterial,
    previous: Option<&TrustStoreRecord>,
) -> Result<(TrustStoreRecord, Vec<GateStep>), GateError> {
    check_trust_store_name(name)?;
    let mut steps = Vec::new();
    let bundle = &published.bundle;
    let first = backend.trust_store(name).await?;
    let arn = match &first {
        None => {
            let arn = backend.create_trust_store(name, bundle).await?;
            steps.push(GateStep::CreateTrustStore {
                bundle: bundle.key.clone(),
            });
            arn
        }
        Some(read) => {
            // The bundle a trust store holds cannot be read back by key,
            // only from eos-sec's own record of what it attached.
            let same = previous.is_some_and(|p| p.arn == read.arn && p.bundle == *bundle);
            if !same {
                backend.modify_trust_store(&read.arn, bundle).await?;
                steps.push(GateStep::ModifyTrustStore {
                    bundle: bundle.key.clone(),
                });
            }
            read.arn.clone()
        }
    };
    let read = match first {
        Some(read) if steps.is_empty() => read,
        _ => read_trust_store(backend, name, &arn).await?,
    };
    let crl = match &published.crl {
        None => None,
        Some((object, file, entries)) => {
            let kept = previous
                .filter(|p| p.arn == arn)
                .and_then(|p| p.crl.as_ref())
                .filter(|c| c.object == *object)
                .filter(|c| read.revocations.iter().any(|r| r.id == c.revocation_id));
            let revocation_id = match kept {
                Some(c) => c.revocation_id,
                None => {
                    if read.revocations.len() + 1 > limits::REVOCATION_FILES {
                        return Err(material_limit_files(name, read.revocations.len()));
                    }
                    let added = backend.add_revocation(&arn, object).await?;
                    steps.push(GateStep::AddRevocation {
                        crl_number: file.number,
                        revocation_id: added.id,
                    });
                    added.id
                }
            };
            let superseded: Vec<i64> = read
                .revocations
                .iter()
                .map(|r| r.id)
                .filter(|id| *id != revocation_id)
                .collect();
            if !superseded.is_empty() {
                backend.remove_revocations(&arn, &superseded).await?;
                steps.push(GateStep::RemoveRevocations {
                    revocation_ids: superseded,
                });
            }
            Some(CrlRecord {
                number: file.number,
                this_update: file.this_update.clone(),
                next_update: file.next_update.clone(),
                object: object.clone(),
                revocation_id,
                entries: *entries,
            })
        }
    };
    let after = read_trust_store(backend, name, &arn).await?;
    check_trust_store(name, &after, &arn, material, crl.as_ref())?;
    Ok((
        TrustStoreRecord {
            arn,
            bundle: bundle.clone(),
            crl,
        },
        steps,
    ))
}

async fn read_trust_store<B: GateBackend>(
    backend: &B,
    name: &str,
    arn: &str,
) -> Result<TrustStoreRead, GateError> {
    backend
        .trust_store(name)
        .await?
        .ok_or_else(|| GateError::ReadBack {
            what: "trust store",
            name: name.to_owned(),
            found: "nothing".to_owned(),
            expected: arn.to_owned(),
        })
}

fn material_limit_files(name: &str, held: usize) -> GateError {
    material(
        "CRL",
        format!(
            "trust store {name} holds {held} revocation files; ELBv2 allows {} per trust store",
            limits::REVOCATION_FILES
        ),
    )
}

/// The read-back check: the trust store holds the bundle's certificates
/// and exactly the CRL's revocation file with its entries.
fn check_trust_store(
    name: &str,
    read: &TrustStoreRead,
    arn: &str,
    material: &TrustMaterial,
    crl: Option<&CrlRecord>,
) -> Result<(), GateError> {
    let mismatch = |found: String, expected: String| GateError::ReadBack {
        what: "trust store",
        name: name.to_owned(),
        found,
        expected,
    };
    if read.arn != arn {
        return Err(mismatch(read.arn.clone(), arn.to_owned()));
    }
    if read.ca_certificates != material.certificates() {
        return Err(mismatch(
            format!("{} CA certificates", read.ca_certificates),
            format!("{}", material.certificates()),
        ));
    }
    let expected: Vec<Revocation> = crl
        .map(|c| Revocation {
            id: c.revocation_id,
            entries: c.entries,
        })
        .into_iter()
        .collect();
    if read.revocations != expected {
        return Err(mismatch(
            format!("revocations {}", describe(&read.revocations)),
            describe(&expected),
        ));
    }
    Ok(())
}

fn describe(revocations: &[Revocation]) -> String {
    if revocations.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = revocations
        .iter()
        .map(|r| format!("{} ({} entries)", r.id, r.entries))
        .collect();
    parts.join(", ")
}

/// What eos-sec put on an API Gateway domain, as recorded after read-back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// The bundle object its truststore points at.
    pub bundle: ObjectRef,
}

/// Point the API Gateway domain `name` at the published bundle (when it
/// points elsewhere) and read it back. eos-sec never creates a domain: its
/// TLS certificate and API mappings belong to whoever made it.
pub async fn sync_domain<B: GateBackend>(
    backend: &B,
    name: &str,
    published: &PublishedMaterial,
) -> Result<(DomainRecord, Vec<GateStep>), GateError> {
    let bundle = &published.bundle;
    let missing = || GateError::Missing {
        what: "API Gateway domain",
        name: name.to_owned(),
    };
    let read = backend.domain(name).await?.ok_or_else(missing)?;
    let mut steps = Vec::new();
    if !domain_matches(&read, bundle) {
        backend.set_domain_truststore(name, bundle).await?;
        steps.push(GateStep::SetDomainTruststore { uri: bundle.uri() });
    }
    let after = backend.domain(name).await?.ok_or_else(missing)?;
    if !domain_matches(&after, bundle) {
        return Err(GateError::ReadBack {
            what: "API Gateway domain",
            name: name.to_owned(),
            found: after
                .truststore_uri
                .unwrap_or_else(|| "no truststore".to_owned()),
            expected: bundle.uri(),
        });
    }
    Ok((
        DomainRecord {
            bundle: bundle.clone(),
        },
        steps,
    ))
}

/// The domain's truststore is the bundle's object (and version, when the
/// bucket is versioned).
pub fn domain_matches(read: &DomainRead, bundle: &ObjectRef) -> bool {
    read.truststore_uri.as_deref() == Some(bundle.uri().as_str())
        && (bundle.version.is_none() || read.truststore_version == bundle.version)
}

/// A space whose certificates an API Gateway domain checks without a CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiGatewayWarning {
    /// The domain.
    pub domain: String,
    /// The space.
    pub space: String,
    /// Its mode (`cert` or `both`).
    pub mode: crate::Mode,
    /// The longest lifetime its certificates may have, in hours.
    pub max_lifetime_hours: u64,
}

impl fmt::Display for ApiGatewayWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "space {} (mode {}) is served by API Gateway domain {}, which checks no CRL, and its certificates may live {} h (over {} h): a revoked certificate keeps passing there until it expires",
            self.space,
            self.mode,
            self.domain,
            self.max_lifetime_hours,
            API_GATEWAY_MAX_LIFETIME_HOURS
        )
    }
}

/// Warn for every `cert`/`both` space behind an API Gateway domain whose
/// certificates may live longer than [`API_GATEWAY_MAX_LIFETIME_HOURS`].
pub fn api_gateway_warnings(
    domain: &str,
    spaces: &[(String, crate::Mode)],
    max_lifetime_hours: u64,
) -> Vec<ApiGatewayWarning> {
    if max_lifetime_hours <= API_GATEWAY_MAX_LIFETIME_HOURS {
        return Vec::new();
    }
    spaces
        .iter()
        .filter(|(_, mode)| matches!(mode, crate::Mode::Cert | crate::Mode::Both))
        .map(|(space, mode)| ApiGatewayWarning {
            domain: domain.to_owned(),
            space: space.clone(),
            mode: *mode,
            max_lifetime_hours,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_content_addresses() {
        let a = object_key("eos/", ObjectKind::Bundle, b"one");
        assert_eq!(a, object_key("eos/", ObjectKind::Bundle, b"one"));
        assert_ne!(a, object_key("eos/", ObjectKind::Bundle, b"two"));
        assert!(a.starts_with("eos/bundle/") && a.ends_with(".pem"), "{a}");
        assert_eq!(
            object_key("", ObjectKind::Crl, b""),
            "crl/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.pem"
        );
    }

    #[test]
    fn trust_store_names_as_elbv2_takes_them() {
        for ok in ["eos-ca", "a", "A1-b2-C3", &"x".repeat(32)] {
            assert!(check_trust_store_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a_b", "a.b", &"x".repeat(33)] {
            assert!(check_trust_store_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bundle_limits_are_checked_before_sending() {
        assert!(matches!(
            check_material(b"", None),
            Err(GateError::Material {
                what: "CA bundle",
                ..
            })
        ));
        assert!(check_material(b"not pem", None).is_err());
    }

    #[test]
    fn warns_only_for_cert_spaces_with_long_lifetimes() {
        let spaces = vec![
            ("acme".to_owned(), crate::Mode::Cert),
            ("beta".to_owned(), crate::Mode::Ip),
            ("gamma".to_owned(), crate::Mode::Both),
        ];
        assert!(api_gateway_warnings("api.x", &spaces, 72).is_empty());
        let w = api_gateway_warnings("api.x", &spaces, 720);
        let names: Vec<&str> = w.iter().map(|w| w.space.as_str()).collect();
        assert_eq!(names, ["acme", "gamma"]);
    }
}
