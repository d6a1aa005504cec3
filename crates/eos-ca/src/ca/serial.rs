//! Certificate serial numbers.

use std::fmt;

use super::*;
use x509_cert::serial_number::SerialNumber;

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

    pub(super) fn from_serial_number(s: &SerialNumber) -> Serial {
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

    pub(super) fn to_serial_number(&self) -> Result<SerialNumber, IssueError> {
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
