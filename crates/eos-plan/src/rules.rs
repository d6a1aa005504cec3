//! Network Access Rules: what space administrators declare (with
//! SETUP_USER_NETWORK_ACCESS_MANAGE), and the three file formats they are
//! imported from. See docs/RULES.md.

use std::collections::BTreeSet;
use std::fmt;

use eos_identity::{SpaceId, UserId};
use eos_ipset::{IpNet, canonical, parse_net};
use serde::de::value::{Error as DeError, MapDeserializer};
use serde::de::{IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A CIDR that may appear in a declared rule: canonical (host bits zero,
/// IPv4-mapped IPv6 as IPv4) and never `/0`, which would open the gate to
/// everyone (WAF refuses it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleCidr(IpNet);

impl RuleCidr {
    /// Parse and check a CIDR for a rule. Host bits are refused rather than
    /// cleared: a rule is a security decision and `192.0.2.7/24` is ambiguous
    /// (one host, or the whole /24?).
    pub fn parse(s: &str) -> Result<RuleCidr, RuleFieldError> {
        let parsed = parse_net(s).map_err(|e| RuleFieldError::Cidr(e.to_string()))?;
        if parsed.host_bits_cleared {
            return Err(RuleFieldError::HostBits {
                token: s.trim().to_owned(),
                network: canonical(&parsed.net),
            });
        }
        if parsed.net.prefix_len() == 0 {
            return Err(RuleFieldError::ZeroPrefix(s.trim().to_owned()));
        }
        Ok(RuleCidr(parsed.net))
    }

    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl fmt::Display for RuleCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&canonical(&self.0))
    }
}

impl Serialize for RuleCidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RuleCidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RuleCidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A short human description of a rule ("HQ office", "VPN egress"):
/// 1–256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    /// Maximum length in characters.
    pub const MAX_LEN: usize = 256;

    /// Validate a label.
    pub fn new(s: &str) -> Result<Label, RuleFieldError> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > Self::MAX_LEN {
            return Err(RuleFieldError::Label(format!(
                "label must be 1 to {} characters, got {n}",
                Self::MAX_LEN
            )));
        }
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(RuleFieldError::Label(format!(
                "label contains the control character {c:?}"
            )));
        }
        Ok(Label(s.to_owned()))
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Label::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A UTC timestamp read from RFC 3339 text (JSON, CSV, TOML strings) or a
/// native TOML offset date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    /// Parse RFC 3339 (`2026-01-05T09:00:00Z`).
    pub fn parse(s: &str) -> Result<Timestamp, RuleFieldError> {
        OffsetDateTime::parse(s.trim(), &Rfc3339)
            .map(|t| Timestamp(t.to_offset(time::UtcOffset::UTC)))
            .map_err(|_| RuleFieldError::Time(s.trim().chars().take(64).collect()))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Input {
            Text(String),
            Toml(toml::value::Datetime),
        }
        let text = match Input::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected an RFC 3339 timestamp like 2026-01-05T09:00:00Z")
        })? {
            Input::Text(s) => s,
            Input::Toml(dt) => dt.to_string(),
        };
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why one field of a rule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleFieldError {
    /// Not an address or CIDR.
    #[error("cidr: {0}")]
    Cidr(String),
    /// Host bits set.
    #[error("cidr `{token}` has host bits set; write the network `{network}` or a /32 or /128")]
    HostBits {
        /// As written.
        token: String,
        /// The network it would be.
        network: String,
    },
    /// `/0`.
    #[error("cidr `{0}` is a /0: it would admit every address (refused always)")]
    ZeroPrefix(String),
    /// Bad label.
    #[error("{0}")]
    Label(String),
    /// Bad timestamp.
    #[error("invalid timestamp `{0}`: expected RFC 3339 like 2026-01-05T09:00:00Z")]
    Time(String),
    /// Expiry not after creation.
    #[error("expires {expires} is not after created {created}")]
    ExpiryBeforeCreation {
        /// Created.
        created: String,
        /// Expires.
        expires: String,
    },
}

/// A declared Network Access Rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAccessRule {
    /// The space it opens.
    pub space: SpaceId,
    /// The network it admits.
    pub cidr: RuleCidr,
    /// What it is for.
    pub label: Label,
    /// The administrator who declared it.
    pub declared_by: UserId,
    /// When it was declared (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it stops counting (UTC), if ever.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires: Option<OffsetDateTime>,
}

impl NetworkAccessRule {
    /// A rule, checking that an expiry comes after creation.
    pub fn new(
        space: SpaceId,
        cidr: RuleCidr,
        label: Label,
        declared_by: UserId,
        created: OffsetDateTime,
        expires: Option<OffsetDateTime>,
    ) -> Result<NetworkAccessRule, RuleFieldError> {
        if let Some(e) = expires
            && e <= created
        {
            return Err(RuleFieldError::ExpiryBeforeCreation {
                created: rfc3339(created),
                expires: rfc3339(e),
            });
        }
        Ok(NetworkAccessRule {
            space,
            cidr,
            label,
            declared_by,
            created,
            expires,
        })
    }

    /// Has the rule expired at `now`?
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// RFC 3339 UTC with second precision, the format of every timestamp eos-sec
/// writes (eos-identity's).
pub use eos_identity::rfc3339;

/// The file formats rules are imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleFormat {
    /// `[[rule]]` tables.
    Toml,
    /// An array of objects (or `{"rules": [...]}`).
    Json,
    /// A header row `space,cidr,label,declared_by,created,expires`.
    Csv,
}

impl RuleFormat {
    /// The format for a file name's extension.
    pub fn from_path(path: &str) -> Option<RuleFormat> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(RuleFormat::Toml),
            "json" => Some(RuleFormat::Json),
            "csv" => Some(RuleFormat::Csv),
            _ => None,
        }
    }
}

/// Why a rules file was refused. Always names the file and, where the format
/// reports one, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleImportError {
    /// A syntax or field error at a place in the file.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        /// The file name.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The same space and CIDR twice in one file.
    #[error(
        "{file}:{line}: duplicate rule for space {space} cidr {cidr} (first at line {first_line})"
    )]
    Duplicate {
        /// The file name.
        file: String,
        /// Line of the second occurrence.
        line: usize,
        /// Line of the first.
        first_line: usize,
        /// Space.
        space: String,
        /// CIDR.
        cidr: String,
    },
}

/// One record as written in a file; `created` defaults to the import time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRecord {
    space: SpaceId,
    cidr: RuleCidr,
    label: Label,
    declared_by: UserId,
    #[serde(default)]
    created: Option<Timestamp>,
    #[serde(default, deserialize_with = "empty_as_none")]
    expires: Option<Timestamp>,
}

/// CSV writes a missing expiry as an empty field.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Input {
        Text(String),
        Toml(toml::value::Datetime),
    }
    match Option::<Input>::deserialize(d)? {
        None => Ok(None),
        Some(Input::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Input::Text(s)) => Timestamp::parse(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Input::Toml(dt)) => Timestamp::parse(&dt.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Parse a rules file. `file` names it in errors; `now` is the creation time
/// of records without `created`. Every record is validated; the first error
/// refuses the whole file (nothing is half-imported).
pub fn parse_rules(
    text: &str,
    format: RuleFormat,
    file: &str,
    now: OffsetDateTime,
) -> Result<Vec<NetworkAccessRule>, RuleImportError> {
    let located: Vec<Located> = match format {
        RuleFormat::Toml => parse_toml(text, file)?,
        RuleFormat::Json => parse_json(text, file)?,
        RuleFormat::Csv => parse_csv(text, file)?,
    };
    let mut seen: Vec<((SpaceId, RuleCidr), usize)> = Vec::new();
    let mut keys = BTreeSet::new();
    let mut out = Vec::with_capacity(located.len());
    for Located {
        line,
        column,
        record: r,
    } in located
    {
        let key = (r.space.clone(), r.cidr);
        if !keys.insert(key.clone()) {
            let first_line = seen.iter().find(|(k, _)| *k == key).map_or(0, |(_, l)| *l);
            return Err(RuleImportError::Duplicate {
                file: file.to_owned(),
                line,
                first_line,
                space: r.space.to_string(),
                cidr: r.cidr.to_string(),
            });
        }
        seen.push((key, line));
        let created = r.created.map_or(now, |t| t.0);
        let rule = NetworkAccessRule::new(
            r.space,
            r.cidr,
            r.label,
            r.declared_by,
            created,
            r.expires.map(|t| t.0),
        )
        .map_err(|e| RuleImportError::At {
            file: file.to_owned(),
            line,
            column,
            message: e.to_string(),
        })?;
        out.push(rule);
    }
    Ok(out)
}

/// A record read from a file, with where an error about the whole record
/// points: the field it is about where the format has columns (CSV: the
/// `expires` field), else the record's start.
struct Located {
    line: usize,
    column: usize,
    record: RuleRecord,
}

/// The 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn parse_toml(text: &str, file: &str) -> Result<Vec<Located>, RuleImportError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TomlFile {
        #[serde(default)]
        rule: Vec<toml::Spanned<RuleRecord>>,
    }
    let parsed: TomlFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        RuleImportError::At {
            file: file.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    Ok(parsed
        .rule
        .into_iter()
        .map(|s| {
            let (line, column) = line_col(text, s.span().start);
            Located {
                line,
                column,
                record: s.into_inner(),
            }
        })
        .collect())
}

/// serde_json's message without its " at line L column C" suffix: our errors
/// carry the location as `file:line:column` instead.
pub(crate) fn json_message(e: &serde_json::Error) -> String {
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = e.to_string();
    msg.strip_suffix(&suffix).unwrap_or(&msg).to_owned()
}

fn parse_json(text: &str, file: &str) -> Result<Vec<Located>, RuleImportError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped {
        rules: Vec<RuleRecord>,
    }
    let at = |e: serde_json::Error| RuleImportError::At {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: json_message(&e),
    };
    // Two shapes, told apart by the first character, each deserialized
    // directly so field errors keep their line and column.
    let records: Vec<RuleRecord> = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Wrapped>(text).map_err(at)?.rules
    } else {
        serde_json::from_str::<Vec<RuleRecord>>(text).map_err(at)?
    };
    let starts = json_record_starts(text);
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let (line, column) = starts.get(i).map_or((0, 0), |&o| line_col(text, o));
            Located {
                line,
                column,
                record,
            }
        })
        .collect())
}

/// The byte offset of each top-level record's opening `{` in a rules array:
/// the objects at nesting depth 1 (bare array) or 2 (`{"rules": [...]}`),
/// found by a scan that skips string contents.
fn json_record_starts(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut record_depth = None;
    for (offset, b) in text.bytes().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                if record_depth.is_none() && b == b'[' {
                    record_depth = Some(depth + 1);
                }
                if b == b'{' && record_depth == Some(depth) {
                    out.push(offset);
                }
                depth += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

fn parse_csv(text: &str, file: &str) -> Result<Vec<Located>, RuleImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let at = |(line, column): (usize, usize), message: String| RuleImportError::At {
        file: file.to_owned(),
        line,
        column,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|e| at((1, 1), e.to_string()))?
        .clone();
    let expires = headers.iter().position(|h| h == "expires");
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let fields = |pos: Option<&csv::Position>| CsvFields::of(text, pos);
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let fields = fields(e.position());
                return Err(match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        // Point at the first field too many, or at the end
                        // of a record that has too few.
                        let place = usize::try_from(*expected_len)
                            .ok()
                            .filter(|_| len > expected_len)
                            .map_or(fields.end, |i| fields.start_of(i));
                        at(
                            line_col(text, place),
                            format!("{len} fields, the header has {expected_len}"),
                        )
                    }
                    _ => at(line_col(text, fields.record), e.to_string()),
                });
            }
        }
        let fields = fields(record.position());
        let values = headers.iter().zip(record.iter().map(CsvField));
        let r: RuleRecord = serde_path_to_error::deserialize(MapDeserializer::new(values))
            .map_err(|e| {
                let field = headers.iter().position(|h| e.path().to_string() == h);
                let name = field
                    .and_then(|i| headers.get(i))
                    .map(|h| format!("{h}: "))
                    .unwrap_or_default();
                let place = field.map_or(fields.record, |i| fields.start_of(i));
                at(line_col(text, place), format!("{name}{}", e.inner()))
            })?;
        let (line, column) = line_col(text, expires.map_or(fields.record, |i| fields.start_of(i)));
        out.push(Located {
            line,
            column,
            record: r,
        });
    }
    Ok(out)
}

/// One CSV field as serde input: text, and an empty field as an absent
/// option (what the csv crate's own deserializer does).
struct CsvField<'a>(&'a str);

impl<'de> IntoDeserializer<'de, DeError> for CsvField<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> serde::Deserializer<'de> for CsvField<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        map struct enum identifier ignored_any
    }
}

/// Where the fields of one CSV record start in the file (byte offsets of
/// their first non-blank character, as the reader trims them): the csv
/// crate reports a record's position, not its fields'.
struct CsvFields {
    record: usize,
    fields: Vec<usize>,
    end: usize,
}

impl CsvFields {
    /// The record at `pos`. The reader's position of a record is where the
    /// comment and empty lines before it start: skip them.
    fn of(text: &str, pos: Option<&csv::Position>) -> CsvFields {
        let mut record = pos
            .and_then(|p| usize::try_from(p.byte()).ok())
            .unwrap_or(0)
            .min(text.len());
        while let Some(rest) = text.get(record..) {
            let Some(newline) = rest.find('\n') else {
                break;
            };
            if !(rest.starts_with('#') || rest.starts_with('\n') || rest.starts_with("\r\n")) {
                break;
            }
            record += newline + 1;
        }
        let rest = text.get(record..).unwrap_or_default();
        let mut fields = Vec::new();
        let (mut at_start, mut quoted) = (true, false);
        for (i, c) in rest.char_indices() {
            if at_start && (c == ' ' || c == '\t') {
                continue;
            }
            if at_start {
                fields.push(record + i);
                at_start = false;
            }
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => at_start = true,
                '\n' | '\r' if !quoted => {
                    return CsvFields {
                        record,
                        fields,
                        end: record + i,
                    };
                }
                _ => {}
            }
        }
        if at_start {
            fields.push(text.len());
        }
        CsvFields {
            record,
            fields,
            end: text.len(),
        }
    }

    /// Where field `i` starts (the record's end when it has fewer).
    fn start_of(&self, i: usize) -> usize {
        self.fields.get(i).copied().unwrap_or(self.end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 00:00 UTC)
    }

    const TOML: &str = r#"
[[rule]]
space = "acme"
cidr = "198.51.100.0/24"
label = "HQ office"
declared_by = "alice@acme.example"
created = 2026-01-05T09:00:00Z

[[rule]]
space = "acme"
cidr = "2001:db8:10::/48"
label = "HQ office v6"
declared_by = "alice@acme.example"
created = "2026-01-05T09:00:00Z"
expires = "2026-12-31T00:00:00Z"
"#;

    #[test]
    fn toml_rules_parse() {
        let rules = parse_rules(TOML, RuleFormat::Toml, "r.toml", now()).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].cidr.to_string(), "198.51.100.0/24");
        assert_eq!(rules[1].cidr.to_string(), "2001:db8:10::/48");
        assert!(rules[1].expires.is_some());
    }

    #[test]
    fn json_and_csv_agree_with_toml() {
        let json = r#"[
  {"space": "acme", "cidr": "198.51.100.0/24", "label": "HQ office",
   "declared_by": "alice@acme.example", "created": "2026-01-05T09:00:00Z"},
  {"space": "acme", "cidr": "2001:db8:10::/48", "label": "HQ office v6",
   "declared_by": "alice@acme.example", "created": "2026-01-05T09:00:00Z",
   "expires": "2026-12-31T00:00:00Z"}
]"#;
        let csv = "space,cidr,label,declared_by,created,expires\n\
acme,198.51.100.0/24,HQ office,alice@acme.example,2026-01-05T09:00:00Z,\n\
acme,2001:db8:10::/48,HQ office v6,alice@acme.example,2026-01-05T09:00:00Z,2026-12-31T00:00:00Z\n";
        let t = parse_rules(TOML, RuleFormat::Toml, "r.toml", now()).unwrap();
        let j = parse_rules(json, RuleFormat::Json, "r.json", now()).unwrap();
        let c = parse_rules(csv, RuleFormat::Csv, "r.csv", now()).unwrap();
        assert_eq!(t, j);
        assert_eq!(t, c);
        let wrapped = format!("{{\"rules\": {json}}}");
        assert_eq!(
            parse_rules(&wrapped, RuleFormat::Json, "w.json", now()).unwrap(),
            t
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = TOML.replace("198.51.100.0/24", "198.51.100.7/24");
        let e = parse_rules(&bad, RuleFormat::Toml, "r.toml", now()).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("r.toml:4:"), "{s}");
        assert!(s.contains("host bits"), "{s}");

        let json = "[\n {\"space\": \"acme\", \"cidr\": \"0.0.0.0/0\", \"label\": \"x\",\n  \"declared_by\": \"bob\"}\n]";
        let s = parse_rules(json, RuleFormat::Json, "r.json", now())
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("r.json:2:"), "{s}");
        assert!(s.contains("/0"), "{s}");

        let csv = "space,cidr,label,declared_by,created,expires\nacme,10.0.0.0/8,a,bob,,\nAcme,10.1.0.0/16,b,bob,,\n";
        let s = parse_rules(csv, RuleFormat::Csv, "r.csv", now())
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("r.csv:3:"), "{s}");
        assert!(s.contains("space id"), "{s}");
    }

    #[test]
    fn duplicates_and_bad_expiry_are_refused() {
        let csv = "space,cidr,label,declared_by,created,expires\nacme,10.0.0.0/8,a,bob,,\nacme,10.0.0.0/8,b,bob,,\n";
        let s = parse_rules(csv, RuleFormat::Csv, "r.csv", now())
            .unwrap_err()
            .to_string();
        assert_eq!(
            s,
            "r.csv:3: duplicate rule for space acme cidr 10.0.0.0/8 (first at line 2)"
        );
        let json = "[\n{\"space\":\"acme\",\"cidr\":\"10.0.0.0/8\",\"label\":\"a\",\"declared_by\":\"bob\"},\n{\"space\":\"acme\",\"cidr\":\"10.0.0.0/8\",\"label\":\"a\",\"declared_by\":\"bob\"}\n]";
        let s = parse_rules(json, RuleFormat::Json, "r.json", now())
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("r.json:3:"), "{s}");
        let toml = "[[rule]]\nspace=\"acme\"\ncidr=\"10.0.0.0/8\"\nlabel=\"a\"\ndeclared_by=\"bob\"\ncreated=\"2026-02-01T00:00:00Z\"\nexpires=\"2026-01-01T00:00:00Z\"\n";
        let s = parse_rules(toml, RuleFormat::Toml, "r.toml", now())
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("r.toml:1:"), "{s}");
        assert!(s.contains("not after created"), "{s}");
    }

    /// The `file:line:column: message` of refusing `rows` under the header.
    fn csv_error(rows: &str) -> String {
        let csv = format!("space,cidr,label,declared_by,created,expires\n{rows}");
        parse_rules(&csv, RuleFormat::Csv, "r.csv", now())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn csv_errors_name_the_column() {
        let e = csv_error("acme,10.0.0.0/8,a,bob,,\nacme,10.1.2.3/16,b,bob,,\n");
        assert!(e.starts_with("r.csv:3:6: cidr: "), "{e}");
        // Columns count characters, past quoted commas and trimmed blanks.
        let e = csv_error("acme,10.0.0.0/8,\"Zürich, HQ\",bob,  yesterday,\n");
        assert!(e.starts_with("r.csv:2:36: created: "), "{e}");
        // A record-level refusal points at the field it is about.
        let e = csv_error("acme,10.0.0.0/8,a,bob,2026-02-01T00:00:00Z,2026-01-01T00:00:00Z\n");
        assert!(e.starts_with("r.csv:2:44: "), "{e}");
        assert!(e.contains("not after created"), "{e}");
        // A field too many: where it starts; too few: where the record ends.
        let e = csv_error("acme,10.0.0.0/8,a,bob,,,extra\n");
        assert_eq!(e, "r.csv:2:25: 7 fields, the header has 6");
        let e = csv_error("acme,10.0.0.0/8,a\n");
        assert_eq!(e, "r.csv:2:18: 3 fields, the header has 6");
        // Comment lines and a quoted line break count as lines.
        let e = csv_error("# note\nacme,10.0.0.0/8,\"two\nlines\",bob,,\n");
        assert!(e.starts_with("r.csv:3:17: label: "), "{e}");
        let e = csv_error("# note\n# more\nacme,0.0.0.0/0,c,bob,,\n");
        assert!(e.starts_with("r.csv:4:6: cidr: "), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let toml = "[[rule]]\nspace=\"acme\"\ncidr=\"10.0.0.0/8\"\nlabel=\"a\"\ndeclared_by=\"bob\"\nexpiry=\"2026-01-01T00:00:00Z\"\n";
        let s = parse_rules(toml, RuleFormat::Toml, "r.toml", now())
            .unwrap_err()
            .to_string();
        assert!(s.contains("unknown field `expiry`"), "{s}");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,400}") {
            let _ = parse_rules(&s, RuleFormat::Toml, "f", now());
            let _ = parse_rules(&s, RuleFormat::Json, "f", now());
            let _ = parse_rules(&s, RuleFormat::Csv, "f", now());
        }

        #[test]
        fn csv_errors_point_at_the_field(
            label in "[a-zA-Zäé ,\"]{0,19}[a-z]",
            blanks in " {0,3}",
            comments in 0usize..3,
        ) {
            let quoted = format!("\"{}\"", label.replace('"', "\"\""));
            let before = format!("acme,10.0.0.0/8,{quoted},bob,{blanks}");
            let csv = format!(
                "space,cidr,label,declared_by,created,expires\n{}{before}yesterday,\n",
                "# c\n".repeat(comments)
            );
            let e = parse_rules(&csv, RuleFormat::Csv, "r.csv", now()).unwrap_err().to_string();
            let at = format!("r.csv:{}:{}: created: ", comments + 2, before.chars().count() + 1);
            proptest::prop_assert!(e.starts_with(&at), "{} does not start with {}", e, at);
        }

        #[test]
        fn rule_cidr_round_trips(a in 1u32.., len in 1u8..=32) {
            let net = eos_ipset::Ipv4Net::new(std::net::Ipv4Addr::from(a), len).unwrap().trunc();
            let text = net.to_string();
            let parsed = RuleCidr::parse(&text).unwrap();
            proptest::prop_assert_eq!(parsed.to_string(), text);
        }
    }
}
