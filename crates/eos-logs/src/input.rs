//! Inputs: files (plain or gzip, detected by magic bytes), directories
//! (recursively, in name order, hidden entries skipped), globs, stdin, and
//! any other [`LogSource`] (CloudWatch Logs is one, implemented in eos-aws).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::ScanError;

/// A source of log text that is not a file, e.g. CloudWatch Logs events.
/// Each batch holds whole lines, each ending in `\n`.
pub trait LogSource: Send {
    /// Name shown in bad-line locations (`cloudwatch:GROUP`).
    fn name(&self) -> String;
    /// The next batch, or `None` at the end.
    fn next_batch(&mut self) -> io::Result<Option<Vec<u8>>>;
}

/// One input of a scan.
pub struct Input {
    name: String,
    kind: Kind,
}

enum Kind {
    Path(PathBuf),
    Stdin,
    Source(Box<dyn LogSource>),
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").field("name", &self.name).finish()
    }
}

impl Input {
    /// A file (gzip detected by its first bytes).
    pub fn path(path: impl Into<PathBuf>) -> Input {
        let path = path.into();
        Input {
            name: path.display().to_string(),
            kind: Kind::Path(path),
        }
    }

    /// Standard input, named `-`.
    pub fn stdin() -> Input {
        Input {
            name: "-".to_owned(),
            kind: Kind::Stdin,
        }
    }

    /// Any other source.
    pub fn source(source: Box<dyn LogSource>) -> Input {
        Input {
            name: source.name(),
            kind: Kind::Source(source),
        }
    }

    /// In-memory text (tests, fuzzing, embedding services).
    pub fn bytes(name: impl Into<String>, data: Vec<u8>) -> Input {
        Input {
            name: name.into(),
            kind: Kind::Bytes(data),
        }
    }

    /// The name used in locations.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size on disk when known (for progress).
    pub(crate) fn size_hint(&self) -> Option<u64> {
        match &self.kind {
            Kind::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Kind::Bytes(b) => Some(b.len() as u64),
            Kind::Stdin | Kind::Source(_) => None,
        }
    }

    /// Expand a command-line source: `-` is stdin, a directory is every
    /// regular file below it, a pattern with `*?[` is a glob, anything else
    /// a file that must exist.
    pub fn expand(spec: &str) -> Result<Vec<Input>, ScanError> {
        if spec == "-" {
            return Ok(vec![Input::stdin()]);
        }
        let path = Path::new(spec);
        if path.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files).map_err(|source| ScanError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            files.sort();
            return Ok(files.into_iter().map(Input::path).collect());
        }
        if path.exists() {
            return Ok(vec![Input::path(path)]);
        }
        if spec.contains(['*', '?', '[']) {
            let paths = glob::glob(spec).map_err(|e| ScanError::Open {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            })?;
            let mut files = Vec::new();
            for p in paths {
                let p = p.map_err(|e| ScanError::Open {
                    path: e.path().to_path_buf(),
                    source: io::Error::new(e.error().kind(), e.to_string()),
                })?;
                if p.is_file() {
                    files.push(p);
                }
            }
            if files.is_empty() {
                return Err(ScanError::NoMatch(spec.to_owned()));
            }
            files.sort();
            return Ok(files.into_iter().map(Input::path).collect());
        }
        Err(ScanError::NoMatch(spec.to_owned()))
    }

    /// Open for reading. With `ranges`, a regular file that does not start
    /// with the gzip magic is handed back whole, for the parsers to read at
    /// offsets; anything else is a stream of raw bytes counted into
    /// `counter`, decompressed when it starts with the gzip magic `1f 8b`.
    pub(crate) fn open(self, counter: Counter, ranges: bool) -> Result<Opened, ScanError> {
        let raw: Box<dyn Read + Send> = match self.kind {
            Kind::Path(p) => {
                let failed = |source| ScanError::Open {
                    path: p.clone(),
                    source,
                };
                let f = File::open(&p).map_err(failed)?;
                if ranges && let Some(len) = plain_file(&f).map_err(failed)? {
                    return Ok(Opened::File { file: f, len });
                }
                Box::new(f)
            }
            Kind::Stdin => Box::new(io::stdin()),
            Kind::Source(s) => Box::new(SourceReader {
                source: s,
                buf: Vec::new(),
                pos: 0,
            }),
            Kind::Bytes(b) => Box::new(io::Cursor::new(b)),
        };
        let mut peek = BufReader::with_capacity(
            256 * 1024,
            Counting {
                inner: raw,
                counter,
            },
        );
        let head = io::BufRead::fill_buf(&mut peek).map_err(|source| ScanError::Open {
            path: PathBuf::from(&self.name),
            source,
        })?;
        if head.starts_with(&GZIP_MAGIC) {
            Ok(Opened::Stream(Box::new(MultiGzDecoder::new(peek))))
        } else {
            Ok(Opened::Stream(Box::new(peek)))
        }
    }
}

/// The first bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An input, opened.
pub(crate) enum Opened {
    /// A regular, uncompressed file of `len` bytes (its size when opened).
    File { file: File, len: u64 },
    /// Anything else, read front to back.
    Stream(Box<dyn Read + Send>),
}

/// The size of `f` if it is a regular file that does not start with the
/// gzip magic (a pipe or a device is read as a stream).
fn plain_file(f: &File) -> io::Result<Option<u64>> {
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mut head = [0u8; 2];
    let n = read_at(f, &mut head, 0)?;
    Ok((!head.get(..n).unwrap_or_default().starts_with(&GZIP_MAGIC)).then_some(meta.len()))
}

/// Read into `buf` from `offset` until it is full or the file ends (a
/// short count), retrying interrupted reads.
pub(crate) fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let at = offset + filled as u64;
        match f.read_at(buf.get_mut(filled..).unwrap_or_default(), at) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), out)?;
        } else if ft.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Shared count of raw bytes read, for progress.
pub(crate) type Counter = std::sync::Arc<std::sync::atomic::AtomicU64>;

struct Counting {
    inner: Box<dyn Read + Send>,
    counter: Counter,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

struct SourceReader {
    source: Box<dyn LogSource>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for SourceReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.source.next_batch()? {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        Ok(n)
    }
}
