//! Holding a to-be-signed or issued certificate to its plan.

use der::Encode;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;

use super::*;
use crate::csr::KeyFingerprint;
use crate::oids;

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

pub(super) fn check_extensions(
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
