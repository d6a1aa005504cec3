//! PEM in and out, and a certificate's serial.

use der::{Decode, Encode, EncodePem};
use p256::pkcs8::LineEnding;
use x509_cert::certificate::Certificate;
use x509_cert::crl::CertificateList;

use super::*;

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
