//! The written form of a security code.
//!
//! ```text
//! EOS-KKKK-KKKK-KSSS-SSSS-SSSS-SSSS-SSSS-SSSS-SSSC
//!     \_________/\___________________________/ \
//!      code id (9)        secret (26)          check (1)
//! ```
//!
//! Every symbol is one of Crockford's 32 base32 symbols (5 bits): no `I`,
//! `L`, `O` or `U`, so nothing reads as another symbol, and on input `I`/`L`
//! are read as `1` and `O` as `0`, case-insensitively. The code id (45 bits)
//! is public: it finds the stored hash without scanning and names the code in
//! `code list` and the audit log. The secret is 26 symbols = 130 bits from the
//! operating system's CSPRNG. The check symbol (a Damm check over GF(32))
//! catches every single-symbol substitution and every swap of two adjacent
//! symbols, so a typo is reported before any request is made.

use std::fmt;
use std::str::FromStr;

use zeroize::{Zeroize, Zeroizing};

/// Crockford's base32 alphabet, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in the code id.
pub const ID_LEN: usize = 9;
/// Symbols in the secret: 26 × 5 = 130 random bits.
pub const SECRET_LEN: usize = 26;
/// Symbols in a whole code: id, secret, check.
pub const CODE_LEN: usize = ID_LEN + SECRET_LEN + 1;
/// Random bits in the secret.
pub const SECRET_BITS: usize = SECRET_LEN * 5;
// The issue's floor: at least 128 random bits, checked at compile time.
const _: () = assert!(SECRET_BITS >= 128);
/// The prefix of the written form. It is not a symbol sequence of the code
/// (the `O` is outside the alphabet), so it is recognised even when a user
/// leaves it off, and secret scanners can find leaked codes by it.
pub const PREFIX: &str = "EOS";
/// Symbols per group in the written form.
pub const GROUP: usize = 4;

/// Why a string is not a well-formed security code. The messages never
/// repeat the input: it may be a real code with a typo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Wrong number of symbols once separators are removed.
    #[error(
        "security code has {found} symbols after removing `-` and spaces; expected {CODE_LEN} (with or without the `EOS-` prefix)"
    )]
    Length {
        /// Symbols found.
        found: usize,
    },
    /// A character that is neither a symbol nor a separator.
    #[error(
        "security code: character {position} is not a Crockford base32 symbol (0-9, A-Z without I, L, O, U)"
    )]
    Symbol {
        /// 1-based position among the symbols.
        position: usize,
    },
    /// The check symbol does not match.
    #[error("security code check symbol does not match: a symbol is mistyped or two are swapped")]
    Check,
    /// A code id of the wrong shape.
    #[error("code id must be {ID_LEN} Crockford base32 symbols, got {found} characters")]
    IdLength {
        /// Characters found.
        found: usize,
    },
}

/// The value of one input character, with Crockford's reading of confusable
/// letters. `None` for anything else (including `U`).
pub fn symbol_value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    let b = u8::try_from(c).ok()?;
    ALPHABET
        .iter()
        .position(|&a| a == b)
        .and_then(|p| u8::try_from(p).ok())
}

fn symbol_char(v: u8) -> char {
    char::from(ALPHABET[usize::from(v & 31)])
}

/// Multiplication by x in GF(2^5) with the primitive polynomial
/// x^5 + x^2 + 1.
fn times_x(v: u8) -> u8 {
    let v = (v & 31) << 1;
    if v & 32 != 0 { (v ^ 0b10_0101) & 31 } else { v }
}

/// Damm's check over the quasigroup `a ∘ b = x·a + b` in GF(32). Because
/// x ≠ 0, 1 it is a totally anti-symmetric quasigroup: one changed symbol
/// or one swap of neighbours always changes the result (Damm, 2004).
fn damm_fold(symbols: impl IntoIterator<Item = u8>) -> u8 {
    symbols
        .into_iter()
        .fold(0, |interim, s| times_x(interim) ^ (s & 31))
}

/// The check symbol for a sequence: the value that folds it to zero.
pub fn check_symbol(symbols: &[u8]) -> u8 {
    times_x(damm_fold(symbols.iter().copied()))
}

/// Whether a sequence that ends in its check symbol is consistent.
pub fn check_ok(symbols_with_check: &[u8]) -> bool {
    damm_fold(symbols_with_check.iter().copied()) == 0
}

/// The public half of a code: finds its record and names it in lists and
/// the audit log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CodeId(String);

impl CodeId {
    fn from_values(values: &[u8]) -> CodeId {
        CodeId(values.iter().map(|&v| symbol_char(v)).collect())
    }

    /// Parse a code id as an operator types it (case and confusables as in
    /// codes, `-` ignored).
    pub fn parse(s: &str) -> Result<CodeId, FormatError> {
        let mut out = String::with_capacity(ID_LEN);
        let mut count = 0usize;
        for c in s.trim().chars().filter(|&c| c != '-') {
            count += 1;
            match symbol_value(c) {
                Some(v) => out.push(symbol_char(v)),
                None => return Err(FormatError::Symbol { position: count }),
            }
        }
        if count != ID_LEN {
            return Err(FormatError::IdLength { found: count });
        }
        Ok(CodeId(out))
    }

    /// The canonical id: 9 upper-case symbols.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CodeId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        CodeId::parse(s)
    }
}

/// A whole security code, id and secret. Exists in memory only while a code
/// is issued or checked: it is never stored, logged or printed except once,
/// at issuance, through [`SecurityCode::reveal`]. `Debug` shows the id only;
/// there is no `Display`; the secret is wiped on drop.
pub struct SecurityCode {
    id: CodeId,
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl fmt::Debug for SecurityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityCode")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The operating system's random source failed. Nothing was issued.
#[derive(Debug, thiserror::Error)]
#[error("operating system random source failed: {0}")]
pub struct RandomError(pub getrandom::Error);

/// Fill `buf` from the operating system's CSPRNG.
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError)
}

impl SecurityCode {
    /// A fresh code: id and secret from the operating system's CSPRNG. Each
    /// random byte gives one symbol (its low 5 bits: 256 is a multiple of 32,
    /// so every symbol is equally likely).
    pub fn generate() -> Result<SecurityCode, RandomError> {
        let mut raw = Zeroizing::new([0u8; ID_LEN + SECRET_LEN]);
        os_random(raw.as_mut())?;
        Ok(Self::from_raw(&raw))
    }

    fn from_raw(raw: &[u8; ID_LEN + SECRET_LEN]) -> SecurityCode {
        let (id, secret_raw) = raw.split_at(ID_LEN);
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        for (dst, src) in secret.iter_mut().zip(secret_raw) {
            *dst = src & 31;
        }
        let id_values: Vec<u8> = id.iter().map(|b| b & 31).collect();
        SecurityCode {
            id: CodeId::from_values(&id_values),
            secret,
        }
    }

    /// Parse a code as a person typed or pasted it: case-insensitive, `-`
    /// and whitespace ignored, the `EOS` prefix optional, `I`/`L` read as
    /// `1` and `O` as `0`. The check symbol must match.
    pub fn parse(input: &str) -> Result<SecurityCode, FormatError> {
        let mut chars: Zeroizing<Vec<char>> = Zeroizing::new(
            input
                .chars()
                .filter(|c| *c != '-' && !c.is_whitespace())
                .collect(),
        );
        // Without its prefix a code is exactly CODE_LEN symbols (which may
        // start like the prefix): anything else starting with it has one.
        let has_prefix = chars.len() != CODE_LEN
            && chars
                .iter()
                .take(PREFIX.len())
                .map(|&c| symbol_value(c))
                .eq(PREFIX.chars().map(symbol_value));
        if has_prefix {
            chars.drain(..PREFIX.len());
        }
        if chars.len() != CODE_LEN {
            return Err(FormatError::Length { found: chars.len() });
        }
        let mut values = Zeroizing::new([0u8; CODE_LEN]);
        for (i, (dst, &c)) in values.iter_mut().zip(chars.iter()).enumerate() {
            *dst = symbol_value(c).ok_or(FormatError::Symbol { position: i + 1 })?;
        }
        if !check_ok(values.as_ref()) {
            return Err(FormatError::Check);
        }
        let (id, rest) = values.split_at(ID_LEN);
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        for (dst, src) in secret.iter_mut().zip(rest) {
            *dst = *src;
        }
        Ok(SecurityCode {
            id: CodeId::from_values(id),
            secret,
        })
    }

    /// The code id (public).
    pub fn id(&self) -> &CodeId {
        &self.id
    }

    /// The secret symbols as ASCII, for the keyed hash.
    pub(crate) fn secret_ascii(&self) -> Zeroizing<[u8; SECRET_LEN]> {
        let mut out = Zeroizing::new([0u8; SECRET_LEN]);
        for (dst, &v) in out.iter_mut().zip(self.secret.iter()) {
            *dst = ALPHABET[usize::from(v & 31)];
        }
        out
    }

    /// The written form, `EOS-XXXX-…`, for the one moment a code is handed to
    /// the person it is for. Everything else refers to a code by its id.
    pub fn reveal(&self) -> Zeroizing<String> {
        let mut values: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(CODE_LEN));
        for c in self.id.0.bytes() {
            values.push(symbol_value(char::from(c)).unwrap_or(0));
        }
        values.extend_from_slice(self.secret.as_ref());
        let check = check_symbol(&values);
        values.push(check);
        let mut out = Zeroizing::new(String::with_capacity(PREFIX.len() + CODE_LEN * 5 / 4 + 1));
        out.push_str(PREFIX);
        for (i, &v) in values.iter().enumerate() {
            if i % GROUP == 0 {
                out.push('-');
            }
            out.push(symbol_char(v));
        }
        values.zeroize();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SecurityCode {
        let mut raw = [0u8; ID_LEN + SECRET_LEN];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::try_from(i * 7 % 32).unwrap();
        }
        SecurityCode::from_raw(&raw)
    }

    #[test]
    fn written_form_shape() {
        let c = sample();
        let s = c.reveal();
        assert_eq!(s.len(), PREFIX.len() + CODE_LEN + CODE_LEN / GROUP);
        assert!(s.starts_with("EOS-"));
        let groups: Vec<&str> = s.split('-').collect();
        assert_eq!(groups.len(), 1 + CODE_LEN / GROUP);
        assert!(groups[1..].iter().all(|g| g.len() == GROUP));
        let back = SecurityCode::parse(&s).unwrap();
        assert_eq!(back.id(), c.id());
        assert_eq!(*back.secret, *c.secret);
    }

    #[test]
    fn lenient_reading() {
        let c = sample();
        let s = c.reveal().to_string();
        let bare: String = s.trim_start_matches("EOS-").replace('-', "");
        for variant in [
            s.to_lowercase(),
            bare.clone(),
            format!("  {}  ", s.replace('-', " ")),
            bare.replace('1', "l").replace('0', "o"),
        ] {
            let back = SecurityCode::parse(&variant).unwrap();
            assert_eq!(back.id(), c.id(), "{variant}");
        }
    }

    #[test]
    fn refusals_never_echo_input() {
        let c = sample();
        let s = c.reveal().to_string();
        let short = &s[..s.len() - 1];
        let e = SecurityCode::parse(short).unwrap_err();
        assert_eq!(
            e,
            FormatError::Length {
                found: CODE_LEN - 1
            }
        );
        let with_u = format!("{}U", short);
        assert_eq!(
            SecurityCode::parse(&with_u).unwrap_err(),
            FormatError::Symbol { position: CODE_LEN }
        );
        for e in [
            SecurityCode::parse(short).unwrap_err(),
            SecurityCode::parse(&with_u).unwrap_err(),
        ] {
            assert!(!e.to_string().contains(&s[4..12]));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let c = sample();
        let s = c.reveal().to_string();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("<redacted>"));
        let secret_part: String = s.replace('-', "")[3 + ID_LEN..3 + ID_LEN + 8].to_owned();
        assert!(!dbg.contains(&secret_part), "{dbg}");
    }

    #[test]
    fn gf32_multiplication_is_a_permutation() {
        let mut seen = [false; 32];
        for v in 0..32u8 {
            seen[usize::from(times_x(v))] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn code_ids() {
        let id = CodeId::parse("abcd-efgh-j").unwrap();
        assert_eq!(id.as_str(), "ABCDEFGHJ");
        assert_eq!(
            CodeId::parse("ilo").unwrap_err(),
            FormatError::IdLength { found: 3 }
        );
        assert_eq!(
            CodeId::parse("ABCDEFGHU").unwrap_err(),
            FormatError::Symbol { position: 9 }
        );
        assert_eq!(CodeId::parse("1l0o1l0o1").unwrap().as_str(), "110011001");
    }
}
