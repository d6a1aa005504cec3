//! Everything the CLI prints on stdout goes through here, built in full
//! before the first byte is written: a failed command prints nothing partial.

use std::io::{IsTerminal, Write};

use serde_json::{Map, Value, json};

/// Write `text` to stdout in one go.
pub fn emit(text: &str) -> anyhow::Result<()> {
    emit_parts(&[text])
}

/// Write `parts` to stdout in order, as one text: a large output made in
/// parts is not copied into one buffer first.
pub fn emit_parts<T: AsRef<[u8]>>(parts: &[T]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = parts
        .iter()
        .try_for_each(|part| out.write_all(part.as_ref()))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        // `eos-sec ... | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// The `status` of a refusal's `--json` document.
pub const REFUSED: &str = "refused";

/// The `--json` document of a refused command, one shape for every command
/// (docs/CLI.md, "JSON output"): `{"status": "refused", "refusals": [...]}`,
/// each refusal an object with at least its stable `code` (docs/CODES.md)
/// and `message`, and what it is about where it names something (a plan
/// finding's `set`, `cidr` and `sources`). A command that reports what it
/// did before refusing (`sync`) adds its report's fields beside them.
pub fn refusal_document(refusals: Vec<Value>, report: Option<Value>) -> Value {
    let mut doc = Map::new();
    doc.insert("status".to_owned(), Value::from(REFUSED));
    doc.insert("refusals".to_owned(), Value::Array(refusals));
    if let Some(Value::Object(fields)) = report {
        for (k, v) in fields {
            doc.entry(k).or_insert(v);
        }
    }
    Value::Object(doc)
}

/// The refusals an error carries, with their stable codes, or `None` when
/// it is not a refusal (a failure, or bad input without a code).
pub fn refusals(err: &anyhow::Error) -> Option<Vec<Value>> {
    err.chain().find_map(refusals_of)
}

fn refusals_of(e: &(dyn std::error::Error + 'static)) -> Option<Vec<Value>> {
    let all = |items: Vec<Value>| Some(items).filter(|v| !v.is_empty());
    let one = |code: &str, message: String| all(vec![json!({"code": code, "message": message})]);
    if let Some(r) = e.downcast_ref::<eos_plan::Refused>() {
        return all(to_values(&r.findings));
    }
    if let Some(ops) = e.downcast_ref::<eos_ops::OpsError>() {
        if let Some(r) = ops.refused() {
            return all(to_values(&r.findings));
        }
        if let eos_ops::OpsError::Policy(p) = ops {
            return policy_refusals(p);
        }
        return None;
    }
    if let Some(p) = e.downcast_ref::<eos_policy::PolicyError>() {
        return policy_refusals(p);
    }
    if let Some(s) = e.downcast_ref::<eos_ops::ca::SignError>() {
        // A refused request (its CSR, its lifetime), not a signer's failure.
        return s.refusal().and_then(|r| one(r.code(), r.to_string()));
    }
    if let Some(b) = e.downcast_ref::<eos_codes::BindingError>() {
        return one(b.code(), b.to_string());
    }
    if let Some(r) = e.downcast_ref::<crate::exit::Refused>() {
        return one(r.code, r.message.clone());
    }
    None
}

fn policy_refusals(p: &eos_policy::PolicyError) -> Option<Vec<Value>> {
    match p {
        eos_policy::PolicyError::Refused { guards, .. } => Some(to_values(guards)),
        _ => None,
    }
}

fn to_values<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// Pretty JSON with a trailing newline.
pub fn emit_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    emit(&s)
}

#[allow(dead_code)] // used by the report commands
/// Colour only on a terminal, and never with `NO_COLOR` set (no-color.org).
pub fn use_colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Colour on stderr (logs, reports of failed commands): only when stderr is
/// a terminal, and never with `NO_COLOR` set.
pub fn use_colour_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

#[allow(dead_code)]
/// Wrap `text` in an ANSI colour when `on`.
pub fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}
