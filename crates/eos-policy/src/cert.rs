//! The certificate gate as a library call: verify a client's chain against
//! the entityOS CA bundle and CRLs, and check that the certificate is bound
//! to the space.
//!
//! This is what an application behind an ALB listener in passthrough mode
//! runs for spaces in mode `either` (the ALB forwards the chain in
//! `X-Amzn-Mtls-Clientcert`; at the application that header is written by
//! the ALB, not the client). Path building, signatures, validity, EKU and
//! revocation are rustls-webpki's; the SAN is read with x509-cert. No DER
//! is parsed by hand.

use std::path::{Path, PathBuf};

use eos_identity::{SpaceId, parse_account_uri};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use serde::Serialize;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_cert::der::Decode;

use crate::PolicyError;

/// The outcome of the certificate gate for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum CertStatus {
    /// No certificate was presented.
    Absent,
    /// The chain verifies and the certificate is bound to the space.
    Valid {
        /// The URI SAN that binds it.
        uri: String,
    },
    /// Refused.
    Invalid {
        /// Why (stable, lower case).
        reason: String,
    },
}

impl CertStatus {
    /// True for [`CertStatus::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, CertStatus::Valid { .. })
    }
}

/// Trust anchors and CRLs, loaded once and shared by every check.
#[derive(Debug)]
pub struct TrustConfig {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// The earliest `nextUpdate` of the CRLs (seconds since the epoch):
    /// from then on webpki refuses every chain (`CRL expired`).
    crls_until: u64,
}

/// A chain that verified against a [`TrustConfig`], and what reusing that
/// result needs: the leaf's URI SANs (the space binding is checked per
/// request, [`VerifiedChain::status`]) and the time window in which the
/// same verification gives the same answer. Within one `TrustConfig` (one
/// set of anchors and CRLs) only time changes webpki's answer, so a cache
/// of these, dropped with the `TrustConfig`, answers as a fresh
/// verification would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The leaf's URI SANs, or why they could not be read.
    uris: Result<Vec<String>, String>,
    /// Seconds since the epoch: the verification holds for
    /// `from <= now < until`.
    from: u64,
    until: u64,
}

impl VerifiedChain {
    /// Whether the verification holds at `now`: every certificate of the
    /// chain is within its validity and no CRL is past its `nextUpdate`.
    /// Outside it, verify again (which refuses, e.g. `certificate expired`).
    pub fn holds_at(&self, now: UnixTime) -> bool {
        (self.from..self.until).contains(&now.as_secs())
    }

    /// The certificate gate's answer for `space`: valid when the leaf has
    /// the space's account URI.
    pub fn status(&self, space: &SpaceId) -> CertStatus {
        let invalid = |reason: String| CertStatus::Invalid { reason };
        let uris = match &self.uris {
            Ok(u) => u,
            Err(e) => return invalid(e.clone()),
        };
        // Parsed exactly, so `acme` never matches a SAN for `acme-corp`.
        match uris
            .iter()
            .find(|uri| parse_account_uri(uri).is_ok_and(|(s, _)| &s == space))
        {
            Some(uri) => CertStatus::Valid { uri: uri.clone() },
            None => invalid(format!(
                "certificate is not bound to space {space} (no URI SAN {}{space}:user:<user>)",
                eos_identity::ACCOUNT_URI_PREFIX
            )),
        }
    }
}

fn pki(what: &'static str, path: &Path, message: impl std::fmt::Display) -> PolicyError {
    PolicyError::Pki {
        what,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl TrustConfig {
    /// Build from a PEM CA bundle and CRLs (PEM or DER). At least one CRL
    /// is required: a gate that cannot see revocations is refused, not
    /// weakened silently.
    pub fn new(
        ca_bundle: (&Path, &[u8]),
        crls: &[(PathBuf, Vec<u8>)],
    ) -> Result<TrustConfig, PolicyError> {
        let (bundle_path, bundle) = ca_bundle;
        let mut anchors = Vec::new();
        for item in CertificateDer::pem_slice_iter(bundle) {
            let der = item.map_err(|e| pki("CA bundle", bundle_path, e))?;
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| pki("CA bundle", bundle_path, parse_reason(&e, "certificate")))?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err(pki("CA bundle", bundle_path, "no CERTIFICATE found"));
        }
        if crls.is_empty() {
            return Err(pki(
                "CA bundle",
                bundle_path,
                "no CRL configured for this CA bundle: revocation cannot be checked ([cert_gate] crl)",
            ));
        }
        let mut owned = Vec::new();
        let mut crls_until = u64::MAX;
        for (path, bytes) in crls {
            let der: Vec<u8> = if bytes.starts_with(b"-----BEGIN") {
                CertificateRevocationListDer::from_pem_slice(bytes)
                    .map_err(|e| pki("CRL", path, e))?
                    .as_ref()
                    .to_vec()
            } else {
                bytes.clone()
            };
            let crl = OwnedCertRevocationList::from_der(&der)
                .map_err(|e| pki("CRL", path, parse_reason(&e, "CRL")))?;
            // webpki keeps `nextUpdate` to itself; read it again for
            // [`VerifiedChain::holds_at`]. A CRL webpki accepted and
            // x509-cert cannot read makes every verification uncacheable.
            let next_update =
                <x509_cert::crl::CertificateList>::from_der(&der).map_or(Some(0), |c| {
                    c.tbs_cert_list
                        .next_update
                        .map(|t| t.to_unix_duration().as_secs())
                });
            if let Some(t) = next_update {
                crls_until = crls_until.min(t);
            }
            owned.push(CertRevocationList::from(crl));
        }
        Ok(TrustConfig {
            anchors,
            crls: owned,
            crls_until,
        })
    }

    /// Read the files named by the policy's `[cert_gate]`; `None` when no CA
    /// bundle is configured.
    pub fn from_policy(policy: &crate::Policy) -> Result<Option<TrustConfig>, PolicyError> {
        let Some(bundle_path) = &policy.cert_gate.ca_bundle else {
            return Ok(None);
        };
        let bundle = std::fs::read(bundle_path).map_err(|e| pki("CA bundle", bundle_path, e))?;
        let mut crls = Vec::new();
        for p in &policy.cert_gate.crls {
            crls.push((p.clone(), std::fs::read(p).map_err(|e| pki("CRL", p, e))?));
        }
        TrustConfig::new((bundle_path, &bundle), &crls).map(Some)
    }

    /// Verify a chain (leaf first, then intermediates) for client
    /// authentication at `now`, and its binding to `space`.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        space: &SpaceId,
        now: UnixTime,
    ) -> CertStatus {
        if chain.is_empty() {
            return CertStatus::Absent;
        }
        match self.verified(chain, now) {
            Ok(v) => v.status(space),
            Err(reason) => CertStatus::Invalid { reason },
        }
    }

    /// [`TrustConfig::verify_chain`], and on success what a cache needs to
    /// reuse the result ([`VerifiedChain`]).
    pub fn verified(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<VerifiedChain, String> {
        self.verify_chain(chain, now)?;
        let (mut from, mut until) = (0u64, self.crls_until);
        for der in chain {
            let Ok(cert) = x509_cert::Certificate::from_der(der.as_ref()) else {
                // webpki verified it, x509-cert cannot read it: no window.
                (from, until) = (u64::MAX, 0);
                continue;
            };
            let validity = cert.tbs_certificate().validity();
            from = from.max(validity.not_before.to_unix_duration().as_secs());
            // webpki admits `now == notAfter`; the window ends there, so
            // that second is verified afresh.
            until = until.min(validity.not_after.to_unix_duration().as_secs());
        }
        let uris = chain
            .first()
            .map_or_else(|| Err("no certificate".to_owned()), leaf_uris);
        Ok(VerifiedChain { uris, from, until })
    }

    /// What an ALB listener in mode `verify` checks: the chain (leaf
    /// first) up to an anchor, for client authentication, valid at `now`,
    /// nothing in it revoked by the CRLs. The reason in words when not.
    pub fn verify_chain(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<(), String> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no certificate".to_owned());
        };
        let ee =
            EndEntityCert::try_from(leaf).map_err(|e| format!("unparsable certificate: {e:?}"))?;
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs)
            .map_err(|_| "no CRL loaded".to_owned())?
            .with_depth(RevocationCheckDepth::Chain)
            // A certificate whose issuer has no CRL here is refused:
            // "not known to be revoked" is not "known not revoked".
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            now,
            KeyUsage::client_auth(),
            Some(revocation),
            None,
        )
        .map(|_| ())
        .map_err(|e| verify_reason(&e))
    }
}

/// The leaf's URI SANs (the entityOS CA writes the account URI, in
/// `eos-identity`'s one format, there).
fn leaf_uris(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let san = cert
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
        .map_err(|e| format!("unparsable subjectAltName: {e}"))?;
    let Some((_, san)) = san else {
        return Ok(Vec::new());
    };
    Ok(san
        .0
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str().to_owned()),
            _ => None,
        })
        .collect())
}

/// Why a CRL or a CA certificate could not be read, in words (webpki's
/// errors display as their Debug form, e.g. `TrailingData(CertRevocationList)`).
fn parse_reason(e: &webpki::Error, what: &str) -> String {
    match e {
        webpki::Error::TrailingData(_) => {
            format!("data after the {what}: the file must hold one {what}, PEM or DER")
        }
        webpki::Error::BadDer | webpki::Error::BadDerTime => {
            format!("not a {what} (not valid DER, or PEM with another label)")
        }
        webpki::Error::UnsupportedCrlVersion => "CRL version is not 2".to_owned(),
        webpki::Error::UnsupportedCriticalExtension => {
            format!("{what} has a critical extension eos-sec does not know")
        }
        webpki::Error::UnsupportedIndirectCrl => "indirect CRLs are not supported".to_owned(),
        webpki::Error::UnsupportedDeltaCrl => "delta CRLs are not supported".to_owned(),
        other => format!("cannot read the {what}: {other:?}"),
    }
}

fn verify_reason(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertRevoked => "certificate revoked".to_owned(),
        webpki::Error::CertExpired { .. } => "certificate expired".to_owned(),
        webpki::Error::CertNotValidYet { .. } => "certificate not yet valid".to_owned(),
        webpki::Error::UnknownIssuer => "issuer is not the entityOS CA".to_owned(),
        webpki::Error::UnknownRevocationStatus => {
            "revocation status unknown (no CRL from the issuer)".to_owned()
        }
        webpki::Error::CrlExpired { .. } => "CRL expired".to_owned(),
        other => format!("chain does not verify: {other:?}"),
    }
}

/// The chain in one certificate header a proxy wrote: URL-encoded PEM,
/// leaf first (nginx's `$ssl_client_escaped_cert`, the ALB's
/// `X-Amzn-Mtls-Clientcert` in passthrough mode). `None` when it is not
/// that (not URL-encoded UTF-8, no CERTIFICATE block, a broken one). Only
/// ever read from a trusted proxy: a client can write any header.
pub fn chain_from_header(value: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let pem = percent_encoding::percent_decode(value).decode_utf8().ok()?;
    match CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>() {
        Ok(chain) if !chain.is_empty() => Some(chain),
        _ => None,
    }
}

/// Read a client certificate chain (PEM, leaf first) from a file.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, PolicyError> {
    let bytes = std::fs::read(path).map_err(|e| pki("client certificate", path, e))?;
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        chain.push(item.map_err(|e| pki("client certificate", path, e))?);
    }
    if chain.is_empty() {
        return Err(pki("client certificate", path, "no CERTIFICATE found"));
    }
    Ok(chain)
}
