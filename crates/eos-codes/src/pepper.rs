//! The pepper: the server-side HMAC key that turns a code into its stored
//! hash. It lives outside the database (environment or a 0600 file), so a
//! copy of the database alone can neither check nor forge a code.
//!
//! Peppers are named by a [`PepperId`] (a keyed fingerprint, safe to store
//! and print). Every stored hash records the id of the pepper that made it;
//! a [`PepperRing`] holds the current pepper (for new codes) and previous
//! ones (to check codes issued before a rotation until they expire).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use crate::format::{RandomError, os_random};

/// The environment variable holding the current pepper as hex.
pub const PEPPER_ENV: &str = "EOS_SEC_PEPPER";
/// Minimum pepper length in bytes (the HMAC-SHA256 output size).
pub const MIN_PEPPER_BYTES: usize = 32;
/// Length of a generated pepper.
pub const GENERATED_PEPPER_BYTES: usize = 32;
/// Pepper files larger than this are refused unread.
const MAX_PEPPER_FILE: u64 = 4096;

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why no usable pepper could be loaded. Messages name the source (variable
/// or file) and never contain the pepper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    /// Neither the environment variable nor a file is configured.
    #[error(
        "no pepper configured: set {PEPPER_ENV} (hex, at least {MIN_PEPPER_BYTES} bytes) or `[codes] pepper_file` (a 0600 file); refusing to handle security codes without one"
    )]
    Missing,
    /// Both sources are set: which one is meant is ambiguous.
    #[error(
        "both {PEPPER_ENV} and `[codes] pepper_file` ({file}) are set; configure exactly one pepper source"
    )]
    Ambiguous {
        /// The configured file.
        file: PathBuf,
    },
    /// Not hexadecimal.
    #[error(
        "pepper from {source_name} is not hexadecimal (expected {MIN_PEPPER_BYTES}+ bytes as hex)"
    )]
    NotHex {
        /// Variable name or file path.
        source_name: String,
    },
    /// Too short to be a key.
    #[error("pepper from {source_name} is {bytes} bytes; at least {MIN_PEPPER_BYTES} are required")]
    TooShort {
        /// Variable name or file path.
        source_name: String,
        /// Its length.
        bytes: usize,
    },
    /// The file can be read by group or others.
    #[error(
        "pepper file {path} has mode {mode:04o}: group or others can access it; run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file, or too large to be a pepper.
    #[error("pepper file {path}: {reason}")]
    NotAPepperFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The file could not be read.
    #[error("pepper file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The random source failed while generating a pepper.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A keyed fingerprint of a pepper: `HMAC-SHA256(pepper, "eos-sec/pepper-id/v1")`,
/// first 8 bytes as hex. Identifies a pepper without revealing it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PepperId(String);

impl PepperId {
    /// Wrap a stored id (16 lower-case hex digits).
    pub fn from_stored(s: &str) -> Option<PepperId> {
        (s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| PepperId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PepperId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The HMAC key for code hashes. `Debug` shows only its id; no `Display`;
/// the bytes are wiped on drop.
pub struct Pepper {
    bytes: Zeroizing<Vec<u8>>,
    id: PepperId,
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pepper")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl Pepper {
    fn from_bytes(bytes: Zeroizing<Vec<u8>>, source_name: &str) -> Result<Pepper, PepperError> {
        if bytes.len() < MIN_PEPPER_BYTES {
            return Err(PepperError::TooShort {
                source_name: source_name.to_owned(),
                bytes: bytes.len(),
            });
        }
        let id = pepper_id(&bytes);
        Ok(Pepper { bytes, id })
    }

    /// A pepper from hex text (surrounding whitespace ignored).
    /// `source_name` names where it came from, for messages.
    pub fn from_hex(text: &str, source_name: &str) -> Result<Pepper, PepperError> {
        let bytes =
            hex::decode(text.trim())
                .map(Zeroizing::new)
                .map_err(|_| PepperError::NotHex {
                    source_name: source_name.to_owned(),
                })?;
        Self::from_bytes(bytes, source_name)
    }

    /// A pepper from a file of hex text. On Unix the file must not be
    /// accessible to group or others (mode 0600 or stricter): a readable
    /// pepper is a leaked pepper. The mode is read from the open handle, so
    /// a file swapped between check and read cannot slip through.
    pub fn from_file(path: &Path) -> Result<Pepper, PepperError> {
        let io = |source| PepperError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(PepperError::NotAPepperFile {
                path: path.to_path_buf(),
                reason: "not a regular file",
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(PepperError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        if meta.len() > MAX_PEPPER_FILE {
            return Err(PepperError::NotAPepperFile {
                path: path.to_path_buf(),
                reason: "larger than 4096 bytes",
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(io)?;
        Self::from_hex(&text, &path.display().to_string())
    }

    /// A fresh pepper of [`GENERATED_PEPPER_BYTES`] from the operating
    /// system's CSPRNG.
    pub fn generate() -> Result<Pepper, PepperError> {
        let mut bytes = Zeroizing::new(vec![0u8; GENERATED_PEPPER_BYTES]);
        os_random(&mut bytes)?;
        Self::from_bytes(bytes, "generator")
    }

    /// The pepper as hex, to write it to its file once when it is made.
    pub fn reveal_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.bytes.as_slice()))
    }

    /// Its id.
    pub fn id(&self) -> &PepperId {
        &self.id
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; 32+ bytes is checked on load.
        match <HmacSha256 as KeyInit>::new_from_slice(&self.bytes) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        }
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` never fails: HMAC hashes long keys and pads
    // short ones (RFC 2104, section 2).
    panic!("HMAC refused a key; HMAC accepts keys of any length")
}

fn pepper_id(bytes: &[u8]) -> PepperId {
    let mut mac = match <HmacSha256 as KeyInit>::new_from_slice(bytes) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    mac.update(b"eos-sec/pepper-id/v1");
    let tag = mac.finalize().into_bytes();
    PepperId(hex::encode(tag.get(..8).unwrap_or_default()))
}

/// Where the peppers come from: the current one from the environment
/// variable or a file (exactly one), previous ones from files.
#[derive(Debug, Default)]
pub struct PepperSources {
    /// The value of [`PEPPER_ENV`], if set (and not empty).
    pub env_hex: Option<Zeroizing<String>>,
    /// `[codes] pepper_file`.
    pub file: Option<PathBuf>,
    /// `[codes] previous_pepper_files`: peppers retired by a rotation whose
    /// codes may still be live.
    pub previous_files: Vec<PathBuf>,
}

impl PepperSources {
    /// Sources with the current pepper's environment variable read from the
    /// process environment.
    pub fn from_env(file: Option<PathBuf>, previous_files: Vec<PathBuf>) -> PepperSources {
        let env_hex = std::env::var(PEPPER_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(Zeroizing::new);
        PepperSources {
            env_hex,
            file,
            previous_files,
        }
    }
}

/// The current pepper and the previous ones still needed to check codes.
#[derive(Debug)]
pub struct PepperRing {
    current: Pepper,
    previous: Vec<Pepper>,
}

impl PepperRing {
    /// A ring from loaded peppers. Previous peppers equal to the current one
    /// (or to each other) are dropped.
    pub fn new(current: Pepper, previous: Vec<Pepper>) -> PepperRing {
        let mut kept: Vec<Pepper> = Vec::with_capacity(previous.len());
        for p in previous {
            if p.id != current.id && kept.iter().all(|k| k.id != p.id) {
                kept.push(p);
            }
        }
        PepperRing {
            current,
            previous: kept,
        }
    }

    /// Load every configured pepper; any problem refuses (fail closed).
    pub fn load(sources: &PepperSources) -> Result<PepperRing, PepperError> {
        let current = match (&sources.env_hex, &sources.file) {
            (Some(_), Some(file)) => {
                return Err(PepperError::Ambiguous { file: file.clone() });
            }
            (Some(hex), None) => Pepper::from_hex(hex, PEPPER_ENV)?,
            (None, Some(file)) => Pepper::from_file(file)?,
            (None, None) => return Err(PepperError::Missing),
        };
        let previous = sources
            .previous_files
            .iter()
            .map(|p| Pepper::from_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PepperRing::new(current, previous))
    }

    /// The pepper new codes are hashed with.
    pub fn current(&self) -> &Pepper {
        &self.current
    }

    /// The pepper with this id, if it is configured.
    pub fn get(&self, id: &PepperId) -> Option<&Pepper> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|p| &p.id == id)
    }

    /// Ids of every configured pepper, current first.
    pub fn ids(&self) -> Vec<PepperId> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|p| p.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn hex_and_length() {
        let p = Pepper::from_hex(HEX, "test").unwrap();
        assert_eq!(p.id().as_str().len(), 16);
        assert_eq!(*p.reveal_hex(), HEX);
        let e = Pepper::from_hex(&HEX[..62], "EOS_SEC_PEPPER").unwrap_err();
        assert_eq!(
            e.to_string(),
            "pepper from EOS_SEC_PEPPER is 31 bytes; at least 32 are required"
        );
        let e = Pepper::from_hex("zz", "x").unwrap_err();
        assert!(matches!(e, PepperError::NotHex { .. }));
        assert!(!e.to_string().contains("zz"));
    }

    #[test]
    fn debug_redacts() {
        let p = Pepper::from_hex(HEX, "test").unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("00112233"), "{d}");
        assert!(d.contains("<redacted>"));
    }

    #[test]
    fn ring_requires_exactly_one_source() {
        assert!(matches!(
            PepperRing::load(&PepperSources::default()),
            Err(PepperError::Missing)
        ));
        let both = PepperSources {
            env_hex: Some(Zeroizing::new(HEX.to_owned())),
            file: Some(PathBuf::from("/nonexistent")),
            previous_files: vec![],
        };
        assert!(matches!(
            PepperRing::load(&both),
            Err(PepperError::Ambiguous { .. })
        ));
    }

    #[test]
    fn ids_differ_and_ring_finds_previous() {
        let a = Pepper::from_hex(HEX, "a").unwrap();
        let b = Pepper::generate().unwrap();
        assert_ne!(a.id(), b.id());
        let (ida, idb) = (a.id().clone(), b.id().clone());
        let a2 = Pepper::from_hex(HEX, "a").unwrap();
        let ring = PepperRing::new(b, vec![a, a2]);
        assert_eq!(ring.ids(), vec![idb.clone(), ida.clone()]);
        assert!(ring.get(&ida).is_some());
        assert_eq!(ring.current().id(), &idb);
    }

    #[cfg(unix)]
    #[test]
    fn file_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        std::fs::write(&path, format!("{HEX}\n")).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Pepper::from_file(&path).unwrap_err();
            assert!(
                matches!(e, PepperError::Permissions { .. }),
                "{mode:o}: {e}"
            );
            assert!(e.to_string().contains("chmod 600"));
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            Pepper::from_file(&path).unwrap();
        }
        assert!(matches!(
            Pepper::from_file(dir.path()),
            Err(PepperError::NotAPepperFile { .. })
        ));
    }
}
