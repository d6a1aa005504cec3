//! Everything the CLI prints on stdout goes through here, built in full
//! before the first byte is written: a failed command prints nothing partial.

use std::io::{IsTerminal, Write};

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
