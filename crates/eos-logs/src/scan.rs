//! The scan pipeline: one reader thread goes through the inputs in order. It
//! cuts a regular, uncompressed file into byte ranges that the parser
//! threads read themselves, each into a buffer of its own, so each line is
//! parsed on the core that copied it; any other input (gzip,
//! pipes, stdin, other sources, and CloudFront logs, whose headers set the
//! layout of the lines after them) it reads and cuts into chunks of whole
//! lines. Parser threads parse, resolve and fold records into per-thread
//! accumulators; the caller merges them. Memory: the chunks in flight
//! (bounded channel; their buffers return to the reader for reuse), one
//! range buffer per parser, and the accumulators — never the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use eos_identity::SpaceId;
use serde::Serialize;

use crate::bad::{Bad, BadLine, BadLines, BadReason};
use crate::cloudfront::Layout;
use crate::error::ScanError;
use crate::input::{Counter, Input, Opened};
use crate::options::{Format, ScanOptions};
use crate::record::{LogRecord, Raw, SpaceSlot, Stamp, resolve_client, space_name};
use crate::usage::PathTree;
use crate::{alb, cloudfront, usage, waf};

/// Bytes read per chunk of a stream: large, so the parsers never wait on
/// the reader.
const CHUNK: usize = 4 << 20;

/// Bytes read first past a range's end, to finish its last line: a line or
/// two. Each further read is twice the last, up to `TAIL_MAX`.
const TAIL_STEP: usize = 4 << 10;
const TAIL_MAX: usize = 1 << 20;

/// Progress of a scan, reported in raw (on-disk) bytes. The CLI draws a bar
/// with it; libraries embedding a scan may ignore it.
pub trait Progress: Sync {
    /// Total bytes when every input's size is known.
    fn start(&self, total_bytes: Option<u64>);
    /// Bytes read so far (monotonic).
    fn position(&self, bytes: u64);
    /// The scan is over.
    fn finish(&self);
}

/// Counts of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Inputs read.
    pub inputs: u64,
    /// Bytes read (after decompression), those of skipped lines included;
    /// a regular file counts as its size when the scan opened it.
    pub bytes: u64,
    /// Lines that were neither blank nor comments.
    pub lines: u64,
    /// Lines parsed into records (in and out of the time window).
    pub records: u64,
    /// Records outside `--since`/`--until` (not aggregated).
    pub outside_window: u64,
    /// Records inside the window that counted as evidence.
    pub evidence: u64,
    /// Unusable lines.
    pub bad: BadLines,
}

impl ScanStats {
    /// Share of lines that were unusable (0.0–1.0).
    pub fn unusable_share(&self) -> f64 {
        let bad = self.bad.total();
        if self.lines == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let share = bad as f64 / self.lines as f64;
        share
    }

    fn merge(&mut self, o: WorkerStats) {
        self.lines += o.lines;
        self.records += o.records;
        self.outside_window += o.outside_window;
        self.evidence += o.evidence;
        for (r, n) in o.by_reason {
            *self.bad.by_reason.entry(r).or_default() += n;
        }
    }
}

#[derive(Default)]
struct WorkerStats {
    lines: u64,
    records: u64,
    outside_window: u64,
    evidence: u64,
    by_reason: HashMap<BadReason, u64>,
    /// (input, seq, 0-based line in chunk, bad)
    examples: Vec<(u32, u64, u64, Bad)>,
    /// (input, seq, lines in chunk)
    chunk_lines: Vec<(u32, u64, u64)>,
}

enum Body {
    Lines {
        data: Vec<u8>,
        layout: Option<Arc<Layout>>,
    },
    /// A regular file: every parser gets one and claims its ranges.
    File(Arc<SharedFile>),
    /// A line or stream tail that could not be read.
    Skipped(Bad),
}

struct Chunk {
    input: u32,
    seq: u64,
    body: Body,
}

/// A regular file the parsers read together, each claiming the next range
/// of it: no message, and no wake-up of the reader, per range.
struct SharedFile {
    file: File,
    /// Its size when opened: what the scan reads.
    len: u64,
    range: u64,
    /// The number of the next range to claim.
    next: AtomicU64,
}

impl SharedFile {
    /// The next unclaimed range: its number (the chunk's sequence number)
    /// and its bytes.
    fn claim(&self) -> Option<(u64, u64, u64)> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let start = k.checked_mul(self.range)?;
        (start < self.len).then(|| (k, start, self.len.min(start.saturating_add(self.range))))
    }
}

/// Per-thread parse state.
struct Ctx<'o> {
    opts: &'o ScanOptions,
    tree: PathTree,
    since: Option<i128>,
    until: Option<i128>,
    has_users: bool,
}

/// Validated space ids by name, so a hot loop validates each space once.
#[derive(Default)]
struct SpaceCache {
    /// Name → index in `ids`: one lookup per line.
    map: foldhash::HashMap<Box<str>, usize>,
    ids: Vec<Option<SpaceId>>,
    /// Bumped whenever the cache is emptied: slots of older generations
    /// mean nothing.
    generation: u32,
}

impl SpaceCache {
    /// Names kept before the cache is emptied: a log full of random hosts
    /// must not grow it forever.
    const MAX: usize = 100_000;

    fn get(&mut self, name: &str) -> Result<(&SpaceId, SpaceSlot), Bad> {
        let i = match self.map.get(name) {
            Some(&i) => i,
            None => {
                if self.ids.len() >= Self::MAX {
                    self.map.clear();
                    self.ids.clear();
                    self.generation = self.generation.wrapping_add(1);
                }
                self.ids.push(SpaceId::new(name).ok());
                self.map.insert(name.into(), self.ids.len() - 1);
                self.ids.len() - 1
            }
        };
        match self.ids.get(i) {
            Some(Some(id)) => Ok((
                id,
                SpaceSlot {
                    generation: self.generation,
                    // At most `MAX`: fits.
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                },
            )),
            _ => crate::bad::bad(BadReason::InvalidSpace, "space", name),
        }
    }
}

/// Parse every input and fold each record (inside the time window) into
/// per-thread accumulators made by `init`. Returns the accumulators (one
/// per parser thread, in no particular order) and the scan's counts.
/// Records reach `fold` in input order within a thread, not across threads.
pub fn fold_records<A, I, F>(
    inputs: Vec<Input>,
    opts: &ScanOptions,
    progress: Option<&dyn Progress>,
    init: I,
    fold: F,
) -> Result<(Vec<A>, ScanStats), ScanError>
where
    A: Send,
    I: Fn() -> A + Sync,
    F: Fn(&mut A, &LogRecord<'_>) + Sync,
{
    opts.validate()?;
    let threads = opts.threads.max(1);
    let names: Vec<String> = inputs.iter().map(|i| i.name().to_owned()).collect();
    if let Some(p) = progress {
        let total = inputs.iter().map(Input::size_hint).sum::<Option<u64>>();
        p.start(total);
    }
    let stop = AtomicBool::new(false);
    let counter: Counter = Arc::new(AtomicU64::new(0));
    let (tx, rx) = sync_channel::<Chunk>(threads * 2);
    let rx = Mutex::new(rx);
    // Parsed chunks' buffers go back to the reader for reuse.
    let (pool_tx, pool_rx) = channel::<Vec<u8>>();
    let n_inputs = inputs.len() as u64;

    let (reader_result, worker_results) = std::thread::scope(|s| {
        let (stop, counter, rx, pool_tx) = (&stop, &counter, &rx, &pool_tx);
        // The reader owns the sender: when it returns, the channel closes
        // and the parsers drain it and stop.
        let reader =
            s.spawn(move || read_all(inputs, opts, (&tx, &pool_rx), stop, counter, progress));
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| work(rx, pool_tx, (counter, progress), opts, stop, &init, &fold)))
            .collect();
        let reader_result = reader.join();
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (reader_result, results)
    });
    if let Some(p) = progress {
        p.finish();
    }
    let bytes = reader_result.map_err(|_| ScanError::Worker("reader panicked".to_owned()))??;

    let mut stats = ScanStats {
        inputs: n_inputs,
        bytes,
        ..ScanStats::default()
    };
    let mut accs = Vec::with_capacity(threads);
    let mut examples = Vec::new();
    let mut chunk_lines = Vec::new();
    for r in worker_results {
        let (acc, mut ws) = r.map_err(|_| ScanError::Worker("parser panicked".to_owned()))?;
        accs.push(acc);
        examples.append(&mut ws.examples);
        chunk_lines.append(&mut ws.chunk_lines);
        stats.merge(ws);
    }
    // Chunk-relative line numbers → input line numbers.
    chunk_lines.sort_unstable();
    let mut base: HashMap<(u32, u64), u64> = HashMap::with_capacity(chunk_lines.len());
    let mut running: (u32, u64) = (u32::MAX, 0);
    for (input, seq, lines) in chunk_lines {
        if running.0 != input {
            running = (input, 0);
        }
        base.insert((input, seq), running.1);
        running.1 += lines;
    }
    examples.sort_by_key(|(input, seq, line, _)| (*input, *seq, *line));
    stats.bad.examples = examples
        .into_iter()
        .take(opts.max_bad_examples.max(usize::from(opts.strict)))
        .map(|(input, seq, line, bad)| BadLine {
            source: names.get(input as usize).cloned().unwrap_or_default(),
            line: base.get(&(input, seq)).copied().unwrap_or(0) + line + 1,
            reason: bad.reason,
            detail: bad.detail,
        })
        .collect();
    if opts.strict
        && let Some(first) = stats.bad.examples.first()
    {
        return Err(ScanError::Strict(first.clone()));
    }
    check_usable(&stats, opts)?;
    Ok((accs, stats))
}

/// A scan that read lines and could use none of them fails (unless
/// `allow_unusable`), saying what to check: a report of nothing but bad
/// lines, exit 0, is easily taken for "no one calls these spaces".
pub(crate) fn check_usable(stats: &ScanStats, opts: &ScanOptions) -> Result<(), ScanError> {
    if opts.allow_unusable || stats.lines == 0 || stats.records > 0 {
        return Ok(());
    }
    let (Some((&reason, _)), Some(first)) = (
        stats.bad.by_reason.iter().max_by_key(|(_, n)| **n),
        stats.bad.examples.first(),
    ) else {
        return Ok(());
    };
    let f = &opts.fields;
    let no_space = matches!(reason, BadReason::NoSpace | BadReason::InvalidSpace);
    let hint = match opts.format {
        Format::Usage if no_space => format!(
            "check [logs.space_rule] and the [logs.fields] keys (space `{}`, host `{}`)",
            f.space, f.host
        ),
        _ if no_space => "check [logs.space_rule]".to_owned(),
        Format::Usage => format!(
            "check --format (usage) and the [logs.fields] keys (time `{}`, source_ip `{}`, status `{}`, space `{}`)",
            f.time, f.source_ip, f.status, f.space
        ),
        other => format!("check --format ({other})"),
    };
    Err(ScanError::NothingUsable {
        lines: stats.lines,
        reason,
        first: first.clone(),
        hint,
    })
}

/// The reader: cut streams into chunks of whole lines, and regular files
/// into ranges the parsers read. Returns the bytes read (decompressed) or
/// handed out in ranges.
fn read_all(
    inputs: Vec<Input>,
    opts: &ScanOptions,
    (tx, pool): (&SyncSender<Chunk>, &Receiver<Vec<u8>>),
    stop: &AtomicBool,
    counter: &Counter,
    progress: Option<&dyn Progress>,
) -> Result<u64, ScanError> {
    let mut bytes: u64 = 0;
    for (idx, input) in inputs.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        let cloudfront = opts.format == Format::Cloudfront;
        // CloudFront's `#Fields:` headers change the layout of the lines
        // after them: only a front-to-back read knows each line's.
        let opened = input.open(counter.clone(), !cloudfront)?;
        let mut cutter = Cutter {
            input: idx,
            seq: 0,
            tx,
            layout: cloudfront.then(|| Arc::new(Layout::default())),
        };
        let tick = || {
            if let Some(p) = progress {
                p.position(counter.load(Ordering::Relaxed));
            }
        };
        match opened {
            Opened::File { file, len } => {
                let shared = Arc::new(SharedFile {
                    file,
                    len,
                    range: opts.range_bytes.max(1),
                    next: AtomicU64::new(0),
                });
                for _ in 0..opts.threads.max(1) {
                    if !cutter.send(Body::File(shared.clone())) {
                        return Ok(bytes);
                    }
                }
                bytes += len;
            }
            Opened::Stream(reader) => {
                bytes += cut(reader, opts.max_line_bytes, &mut cutter, stop, pool, tick);
            }
        }
    }
    Ok(bytes)
}

struct Cutter<'t> {
    input: u32,
    seq: u64,
    tx: &'t SyncSender<Chunk>,
    layout: Option<Arc<Layout>>,
}

impl Cutter<'_> {
    fn send(&mut self, body: Body) -> bool {
        let chunk = Chunk {
            input: self.input,
            seq: self.seq,
            body,
        };
        self.seq += 1;
        self.tx.send(chunk).is_ok()
    }

    /// Send whole lines; for CloudFront, split at `#Fields:` headers so
    /// every chunk has one layout.
    fn lines(&mut self, data: Vec<u8>) -> bool {
        let Some(layout) = self.layout.clone() else {
            return self.send(Body::Lines { data, layout: None });
        };
        let finder = memchr::memmem::Finder::new(b"#Fields:");
        let mut start = 0;
        let mut current = layout;
        let mut from = 0;
        while let Some(k) = finder.find(data.get(from..).unwrap_or_default()) {
            let at = from + k;
            from = at + 1;
            if at != 0 && data.get(at - 1) != Some(&b'\n') {
                continue;
            }
            let end = memchr::memchr(b'\n', data.get(at..).unwrap_or_default())
                .map_or(data.len(), |e| at + e);
            let header = String::from_utf8_lossy(data.get(at..end).unwrap_or_default());
            let Some(next) = Layout::from_header(header.trim_end_matches('\r')) else {
                continue;
            };
            if at > start {
                let part = data.get(start..at).unwrap_or_default().to_vec();
                if !self.send(Body::Lines {
                    data: part,
                    layout: Some(current.clone()),
                }) {
                    return false;
                }
            }
            current = Arc::new(next);
            start = at;
        }
        self.layout = Some(current.clone());
        let rest = if start == 0 {
            data
        } else {
            data.get(start..).unwrap_or_default().to_vec()
        };
        self.send(Body::Lines {
            data: rest,
            layout: Some(current),
        })
    }
}

/// Read `reader` to the end, handing whole lines to `out`. Buffers come
/// back from the parsers through `pool`: each is zero-filled once, when it
/// is first made, and then read into directly after the partial line
/// carried over from the previous chunk.
fn cut(
    mut reader: Box<dyn Read + Send>,
    max_line: usize,
    out: &mut Cutter<'_>,
    stop: &AtomicBool,
    pool: &Receiver<Vec<u8>>,
    mut tick: impl FnMut(),
) -> u64 {
    // Bytes read, skipped ones included.
    let mut read: u64 = 0;
    // The unterminated end of the previous chunk.
    let mut carry: Vec<u8> = Vec::new();
    // Inside a line longer than `max_line`: discard until its end.
    let mut skipping = false;
    let too_long = || Body::Skipped(too_long(max_line));
    loop {
        if stop.load(Ordering::Relaxed) {
            return read;
        }
        let mut buf = pool.try_recv().unwrap_or_default();
        let want = carry.len() + CHUNK;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let old = carry.len();
        buf[..old].copy_from_slice(&carry);
        carry.clear();
        let (filled, failure) = fill(&mut reader, &mut buf, old);
        read += (filled - old) as u64;
        // Short of full: the input ended (or failed).
        let ended = filled < want || failure.is_some();
        buf.truncate(filled);
        tick();
        if skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(k) => {
                    buf.drain(..=k);
                    skipping = false;
                }
                None if ended => {
                    if let Some(e) = failure {
                        out.send(early_end(&e, 0));
                    }
                    return read;
                }
                None => continue,
            }
        }
        if let Some(e) = failure {
            // Whole lines before the failure are still good.
            let keep = memchr::memrchr(b'\n', &buf).map_or(0, |last| last + 1);
            let dropped = buf.len() - keep;
            buf.truncate(keep);
            if !buf.is_empty() && !out.lines(buf) {
                return read;
            }
            out.send(early_end(&e, dropped));
            return read;
        }
        match memchr::memrchr(b'\n', &buf) {
            Some(last) if buf.len() - last - 1 > max_line => {
                // The unterminated tail is already too long.
                buf.truncate(last + 1);
                if !out.lines(buf) || !out.send(too_long()) {
                    return read;
                }
                skipping = true;
            }
            Some(last) => {
                if !ended {
                    carry.extend_from_slice(&buf[last + 1..]);
                    buf.truncate(last + 1);
                }
                if !out.lines(buf) {
                    return read;
                }
            }
            None if buf.len() > max_line => {
                if !out.send(too_long()) {
                    return read;
                }
                skipping = true;
            }
            None if ended => {
                if !buf.is_empty() {
                    out.lines(buf);
                }
            }
            None => carry = buf,
        }
        if ended {
            return read;
        }
    }
}

/// Read into `buf[from..]` until it is full, the input ends or a read
/// fails: bytes held, and the failure.
fn fill(reader: &mut dyn Read, buf: &mut [u8], from: usize) -> (usize, Option<io::Error>) {
    let mut filled = from;
    while filled < buf.len() {
        match read_some(reader, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return (filled, Some(e)),
        }
    }
    (filled, None)
}

/// The input failed mid-stream: a truncated gzip member or a read error.
fn early_end(e: &io::Error, dropped: usize) -> Body {
    let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
        BadReason::TruncatedGzip
    } else {
        BadReason::ReadError
    };
    Body::Skipped(Bad::new(
        reason,
        format!("input ends early ({e}); {dropped} bytes of a partial line dropped"),
    ))
}

fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// What a parser read of its range of a file.
#[derive(Debug)]
struct RangeRead {
    /// Where the whole lines that start in the range are, in the buffer.
    lines: std::ops::Range<usize>,
    /// What cut the line after them short: longer than the limit, or a
    /// failed read.
    tail: Option<Bad>,
}

/// Read the lines that start in bytes `start..end` of `file` into `buf`
/// (kept between calls: it grows, and is zero-filled, only when a range
/// needs more than it held). The byte before `start` tells whether a line
/// starts there; the last line is read past `end` to its newline, to the
/// end of the file, or until it is longer than `max_line`.
fn read_range(file: &File, start: u64, end: u64, max_line: usize, buf: &mut Vec<u8>) -> RangeRead {
    let failed = |at: u64, e: io::Error, what: &str| {
        Some(Bad::new(
            BadReason::ReadError,
            format!("read failed at byte {at} ({e}); {what} dropped"),
        ))
    };
    let from = start.saturating_sub(1);
    let want = usize::try_from(end.saturating_sub(from)).unwrap_or(usize::MAX);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut filled = match crate::input::read_at(file, &mut buf[..want], from) {
        Ok(n) => n,
        Err(e) => {
            return RangeRead {
                lines: 0..0,
                tail: failed(from, e, &format!("bytes {start}..{end}")),
            };
        }
    };
    let whole = |lines| RangeRead { lines, tail: None };
    // The first line starting at or after `start`.
    let first = if start == 0 {
        0
    } else {
        match memchr::memchr(b'\n', &buf[..filled]) {
            Some(k) if k + 1 < filled => k + 1,
            // No line starts in the range: it is inside a longer one.
            _ => return whole(0..0),
        }
    };
    // The file ended early (it shrank), or the range ends a line.
    if filled < want || buf[..filled].last() == Some(&b'\n') {
        return whole(first..filled);
    }
    // The last line goes on past the range.
    let last = memchr::memrchr(b'\n', &buf[first..filled]).map_or(first, |k| first + k + 1);
    let mut step = TAIL_STEP;
    loop {
        if filled - last > max_line {
            return RangeRead {
                lines: first..last,
                tail: Some(too_long(max_line)),
            };
        }
        if buf.len() < filled + step {
            buf.resize(filled + step, 0);
        }
        let at = from + filled as u64;
        let n = match crate::input::read_at(file, &mut buf[filled..filled + step], at) {
            Ok(n) => n,
            Err(e) => {
                return RangeRead {
                    lines: first..last,
                    tail: failed(at, e, "the line there"),
                };
            }
        };
        if let Some(k) = memchr::memchr(b'\n', &buf[filled..filled + n]) {
            return whole(first..filled + k + 1);
        }
        filled += n;
        if n < step {
            // The end of the file ends the line.
            return whole(first..filled);
        }
        step = (step * 2).min(TAIL_MAX);
    }
}

/// A parser thread.
fn work<A, I, F>(
    rx: &Mutex<Receiver<Chunk>>,
    pool: &Sender<Vec<u8>>,
    (counter, progress): (&Counter, Option<&dyn Progress>),
    opts: &ScanOptions,
    stop: &AtomicBool,
    init: &I,
    fold: &F,
) -> (A, WorkerStats)
where
    I: Fn() -> A,
    F: Fn(&mut A, &LogRecord<'_>),
{
    let mut acc = init();
    let mut st = WorkerStats::default();
    // The options were validated: the tree builds.
    let tree = PathTree::new(&opts.fields).unwrap_or_else(|_| PathTree::empty());
    let ctx = Ctx {
        opts,
        tree,
        since: opts.since.map(time::OffsetDateTime::unix_timestamp_nanos),
        until: opts.until.map(time::OffsetDateTime::unix_timestamp_nanos),
        has_users: opts.format.has_users(),
    };
    let mut spaces = SpaceCache::default();
    // This thread's buffer for ranges of files.
    let mut range_buf = Vec::new();
    loop {
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => break,
        };
        let Ok(Chunk { input, seq, body }) = next else {
            break;
        };
        if stop.load(Ordering::Relaxed) {
            continue;
        }
        let note = |st: &mut WorkerStats, seq: u64, line: u64, bad: Bad| {
            *st.by_reason.entry(bad.reason).or_default() += 1;
            if st.examples.len() < opts.max_bad_examples.max(1) {
                st.examples.push((input, seq, line, bad));
            }
            if opts.strict {
                stop.store(true, Ordering::Relaxed);
            }
        };
        let mut lines = |st: &mut WorkerStats, seq: u64, data: &[u8], layout: Option<&Layout>| {
            let mut parse = Parse {
                ctx: &ctx,
                layout,
                spaces: &mut spaces,
                acc: &mut acc,
                fold,
                st,
            };
            parse.lines(data, &mut |st: &mut WorkerStats, line, bad| {
                note(st, seq, line, bad);
            })
        };
        match body {
            Body::Skipped(bad) => {
                st.lines += 1;
                st.chunk_lines.push((input, seq, 1));
                note(&mut st, seq, 0, bad);
            }
            Body::Lines { data, layout } => {
                let n = lines(&mut st, seq, &data, layout.as_deref());
                st.chunk_lines.push((input, seq, n));
                // The reader may be gone: then the buffer is simply freed.
                let _ = pool.send(data);
            }
            Body::File(shared) => {
                while !stop.load(Ordering::Relaxed)
                    && let Some((k, start, end)) = shared.claim()
                {
                    let max_line = opts.max_line_bytes;
                    let read = read_range(&shared.file, start, end, max_line, &mut range_buf);
                    let done = counter.fetch_add(end - start, Ordering::Relaxed) + (end - start);
                    if let Some(p) = progress {
                        p.position(done);
                    }
                    let data = range_buf.get(read.lines).unwrap_or_default();
                    let mut n = lines(&mut st, k, data, None);
                    if let Some(bad) = read.tail {
                        st.lines += 1;
                        note(&mut st, k, n, bad);
                        n += 1;
                    }
                    st.chunk_lines.push((input, k, n));
                }
            }
        }
    }
    (acc, st)
}

fn too_long(max_line: usize) -> Bad {
    Bad::new(
        BadReason::LineTooLong,
        format!("line longer than {max_line} bytes"),
    )
}

/// One parser thread's state while it parses a run of lines.
struct Parse<'p, 'o, A, F> {
    ctx: &'p Ctx<'o>,
    layout: Option<&'p Layout>,
    spaces: &'p mut SpaceCache,
    acc: &'p mut A,
    fold: &'p F,
    st: &'p mut WorkerStats,
}

impl<A, F> Parse<'_, '_, A, F>
where
    F: Fn(&mut A, &LogRecord<'_>),
{
    /// Parse and fold every line of `data`, noting bad ones by their
    /// 0-based number in it; returns the number of lines, blank included.
    fn lines(&mut self, data: &[u8], note: &mut impl FnMut(&mut WorkerStats, u64, Bad)) -> u64 {
        let max_line = self.ctx.opts.max_line_bytes;
        let mut n: u64 = 0;
        let mut start = 0;
        let len = data.len();
        while start < len {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(len, |k| start + k);
            let mut line = &data[start..end];
            start = end + 1;
            n += 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() || line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.ctx.opts.format == Format::Cloudfront && line.first() == Some(&b'#') {
                continue;
            }
            self.st.lines += 1;
            // Lines that span chunks are cut by the reader or the range
            // read; this catches those inside one.
            if line.len() > max_line {
                note(self.st, n - 1, too_long(max_line));
                continue;
            }
            match one_line(
                self.ctx,
                self.layout,
                line,
                self.spaces,
                self.acc,
                self.fold,
            ) {
                Ok(Outcome::Outside) => {
                    self.st.records += 1;
                    self.st.outside_window += 1;
                }
                Ok(Outcome::Record { evidence }) => {
                    self.st.records += 1;
                    self.st.evidence += u64::from(evidence);
                }
                Err(bad) => note(self.st, n - 1, bad),
            }
        }
        n
    }
}

enum Outcome {
    Outside,
    Record { evidence: bool },
}

fn parse_raw<'a>(ctx: &Ctx<'_>, layout: Option<&Layout>, line: &'a [u8]) -> Result<Raw<'a>, Bad> {
    // Every format is text: one UTF-8 check of the whole line (std's fast
    // path), so no parser checks its strings again, and no bad byte passes
    // in a field a JSON parser skips.
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(Bad::new(BadReason::InvalidUtf8, "line is not UTF-8"));
    };
    match ctx.opts.format {
        Format::Usage => usage::parse(&ctx.tree, text),
        Format::Waf => waf::parse(text),
        Format::Alb => alb::parse(text),
        Format::Cloudfront => {
            let default = Layout::default();
            cloudfront::parse(layout.unwrap_or(&default), text)
        }
    }
}

fn one_line<A, F>(
    ctx: &Ctx<'_>,
    layout: Option<&Layout>,
    line: &[u8],
    spaces: &mut SpaceCache,
    acc: &mut A,
    fold: &F,
) -> Result<Outcome, Bad>
where
    F: Fn(&mut A, &LogRecord<'_>),
{
    let raw = parse_raw(ctx, layout, line)?;
    let stamp: Stamp = raw
        .time
        .ok_or_else(|| Bad::new(BadReason::MissingField, "no timestamp"))?;
    let t = stamp.nanos_total();
    if ctx.since.is_some_and(|s| t < s) || ctx.until.is_some_and(|u| t >= u) {
        return Ok(Outcome::Outside);
    }
    let peer = raw
        .peer
        .ok_or_else(|| Bad::new(BadReason::MissingField, "no client address"))?;
    let client = resolve_client(peer, raw.xff.as_deref(), &ctx.opts.trusted_proxies)?;
    let name = space_name(&raw, &ctx.opts.space_rule)?;
    let (space, space_slot) = spaces.get(&name)?;
    let mut rec = LogRecord {
        time: stamp.to_datetime()?,
        stamp,
        space_slot,
        space,
        client_ip: client,
        peer_ip: peer,
        user: raw.user.as_deref(),
        method: raw.method.as_deref().unwrap_or("-"),
        path: raw.path.as_deref().unwrap_or("-"),
        host: raw.host.as_deref(),
        status: raw.status,
        waf_action: raw.waf_action,
        conn_trace_id: raw.conn_trace_id,
        evidence: false,
    };
    let evidence = rec.is_evidence(&ctx.opts.evidence, ctx.has_users);
    rec.evidence = evidence;
    fold(acc, &rec);
    Ok(Outcome::Record { evidence })
}

/// Visit every record in input order on one parser thread (for callers that
/// need order or cannot merge accumulators).
pub fn for_each_record<F>(
    inputs: Vec<Input>,
    opts: &ScanOptions,
    progress: Option<&dyn Progress>,
    f: F,
) -> Result<ScanStats, ScanError>
where
    F: FnMut(&LogRecord<'_>) + Send,
{
    let mut one = opts.clone();
    one.threads = 1;
    let f = Mutex::new(f);
    let (_, stats) = fold_records(
        inputs,
        &one,
        progress,
        || (),
        |(), rec| {
            if let Ok(mut f) = f.lock() {
                (*f)(rec);
            }
        },
    )?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    //! Issue #3's bad-input list, through the whole pipeline (reader,
    //! cutter, parser threads): each gives a counted, named reason and the
    //! run goes on.
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;
    use crate::aggregate::{ScanReport, scan};
    use crate::options::TrustedProxies;

    fn usage_line(i: usize) -> String {
        format!(
            "{{\"timestamp\":\"2026-11-02T08:{:02}:00Z\",\"space\":\"acme\",\"user\":\"u{}\",\"status\":200,\"source_ip\":\"10.0.1.5\",\"x_forwarded_for\":\"203.0.113.{}\"}}",
            i % 60,
            i % 3,
            i % 4
        )
    }

    fn good(n: usize) -> String {
        (0..n).map(|i| usage_line(i) + "\n").collect()
    }

    fn opts(format: Format) -> ScanOptions {
        let mut o = ScanOptions::new(format);
        o.trusted_proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap_or_default();
        o.threads = 2;
        // Some inputs here are nothing but bad lines.
        o.allow_unusable = true;
        o
    }

    fn run(data: Vec<u8>, o: &ScanOptions) -> ScanReport {
        match scan(vec![Input::bytes("t", data)], o, None) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = enc.write_all(data);
        enc.finish().unwrap_or_default()
    }

    fn reasons(r: &ScanReport) -> Vec<(BadReason, u64)> {
        r.stats
            .bad
            .by_reason
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    #[test]
    fn truncated_gzip_keeps_the_lines_before_the_cut() {
        let text = good(20_000);
        let gz = gzip(text.as_bytes());
        let cut = gz.get(..gz.len() / 2).unwrap_or_default().to_vec();
        let r = run(cut, &opts(Format::Usage));
        assert_eq!(reasons(&r), [(BadReason::TruncatedGzip, 1)]);
        assert!(r.stats.records > 1000 && r.stats.records < 20_000, "{r:?}");
        assert!(r.stats.bad.examples[0].detail.contains("input ends early"));
        // The whole stream, gzip detected by magic bytes alone.
        let r = run(gz, &opts(Format::Usage));
        assert_eq!(r.stats.records, 20_000);
        assert_eq!(r.stats.bad.total(), 0);
    }

    #[test]
    fn binary_garbage_is_counted_not_fatal() {
        let mut data = good(3).into_bytes();
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            data.push(x.to_le_bytes()[0]);
        }
        data.push(b'\n');
        data.extend(good(3).into_bytes());
        for format in [Format::Usage, Format::Alb, Format::Cloudfront, Format::Waf] {
            let r = run(data.clone(), &opts(format));
            assert!(r.stats.bad.total() > 0, "{format}");
            assert_eq!(
                r.stats.records + r.stats.bad.total(),
                r.stats.lines,
                "{format}"
            );
        }
        let r = run(data, &opts(Format::Usage));
        assert_eq!(r.stats.records, 6);
    }

    #[test]
    fn a_multi_megabyte_line_is_skipped_and_numbering_stays_right() {
        let mut data = good(2);
        data.push_str("{\"timestamp\":\"");
        data.push_str(&"x".repeat(3 << 20));
        data.push_str("\"}\n");
        data.push_str("not json\n");
        data.push_str(&good(2));
        let r = run(data.into_bytes(), &opts(Format::Usage));
        assert_eq!(r.stats.records, 4);
        assert_eq!(
            reasons(&r),
            [(BadReason::InvalidJson, 1), (BadReason::LineTooLong, 1)]
        );
        let json = r
            .stats
            .bad
            .examples
            .iter()
            .find(|b| b.reason == BadReason::InvalidJson);
        assert_eq!(json.map(|b| b.line), Some(4));
    }

    #[test]
    fn long_lines_across_and_inside_chunks_are_skipped() {
        // Good lines up to just before the first chunk boundary, then a line
        // that crosses it, more good lines, and a long line inside a chunk.
        let line = usage_line(0) + "\n";
        let before = (CHUNK - 1000) / line.len();
        let mut data = good(before);
        data.push_str(&"x".repeat(CHUNK / 2));
        data.push('\n');
        data.push_str(&good(10));
        data.push_str(&"y".repeat(5000));
        data.push('\n');
        data.push_str(&good(10));
        let mut o = opts(Format::Usage);
        o.max_line_bytes = 4096;
        let r = run(data.into_bytes(), &o);
        assert_eq!(r.stats.records, before as u64 + 20);
        assert_eq!(reasons(&r), [(BadReason::LineTooLong, 2)]);
        let lines: Vec<u64> = r.stats.bad.examples.iter().map(|b| b.line).collect();
        assert_eq!(lines, [before as u64 + 1, before as u64 + 12]);
    }

    #[test]
    fn crlf_lines_read_like_lf_lines() {
        let lf = good(500);
        let crlf = lf.replace('\n', "\r\n");
        let a = run(lf.into_bytes(), &opts(Format::Usage));
        let b = run(crlf.into_bytes(), &opts(Format::Usage));
        assert_eq!(b.stats.bad.total(), 0);
        assert_eq!(a.observations, b.observations);
        let alb = "https 2026-11-02T08:01:37.001000Z app/x/1 [2001:db8::7]:443 - 0 0 0 200 200 1 1 \"GET https://acme.entityos.cloud:443/ HTTP/1.1\" \"-\" - -\r\n\
                   https 2026-11-02T08:01:38.001000Z app/x/1 2001:db8::7:50123 - 0 0 0 200 200 1 1 \"GET https://acme.entityos.cloud:443/ HTTP/1.1\" \"-\" - -\r\n";
        let r = run(alb.as_bytes().to_vec(), &opts(Format::Alb));
        assert_eq!(r.stats.bad.total(), 0, "{r:?}");
        assert_eq!(r.observations.len(), 1);
        assert_eq!(r.observations[0].requests, 2);
        assert_eq!(r.observations[0].ip.to_string(), "2001:db8::7");
    }

    #[test]
    fn invalid_utf8_forwarded_for_garbage_and_missing_fields_are_named() {
        let mut data = good(1).into_bytes();
        data.extend_from_slice(b"https 2026-11-02T08:01:37Z app/x/1 1.2.3.4:5 - 0 0 0 200 200 1 1 \"GET https://acme.entityos.cloud/\xff HTTP/1.1\"\n");
        let r = run(data, &opts(Format::Alb));
        assert!(r.stats.bad.by_reason.contains_key(&BadReason::InvalidUtf8));
        let lines = [
            // garbage between the proxy and the client: unusable
            r#"{"timestamp":1,"space":"acme","user":"u","status":200,"source_ip":"10.0.0.1","x_forwarded_for":" 203.0.113.9 , ;DROP, 10.0.0.2 "}"#,
            // garbage left of the client: never read
            r#"{"timestamp":1,"space":"acme","user":"u","status":200,"source_ip":"10.0.0.1","x_forwarded_for":"junk,  203.0.113.9:4711 ,10.0.0.2"}"#,
            // no source_ip
            r#"{"timestamp":1,"space":"acme","user":"u","status":200}"#,
            // invalid UTF-8 inside a string
            "{\"timestamp\":1,\"space\":\"ac\u{0}me\",\"user\":\"u\",\"status\":200,\"source_ip\":\"10.0.0.1\"}",
        ];
        let mut data = lines.join("\n").into_bytes();
        data.extend_from_slice(b"\n{\"timestamp\":1,\"space\":\"\xc3\x28\",\"status\":200,\"source_ip\":\"1.2.3.4\"}\n");
        // ... and in a field no one reads.
        data.extend_from_slice(b"{\"timestamp\":1,\"space\":\"acme\",\"user\":\"u\",\"status\":200,\"source_ip\":\"1.2.3.4\",\"note\":\"\xff\"}\n");
        let r = run(data, &opts(Format::Usage));
        let by = &r.stats.bad.by_reason;
        assert_eq!(by.get(&BadReason::BadForwardedFor), Some(&1), "{by:?}");
        assert_eq!(by.get(&BadReason::MissingField), Some(&1), "{by:?}");
        assert_eq!(by.get(&BadReason::InvalidUtf8), Some(&2), "{by:?}");
        assert_eq!(r.observations.len(), 1);
        assert_eq!(r.observations[0].ip.to_string(), "203.0.113.9");
        // A WAF log's skipped fields are checked too.
        let waf = b"{\"timestamp\":1700000000000,\"action\":\"ALLOW\",\"httpRequest\":{\"clientIp\":\"1.2.3.4\",\"country\":\"\xff\"}}\n";
        let r = run(waf.to_vec(), &opts(Format::Waf));
        assert_eq!(reasons(&r), [(BadReason::InvalidUtf8, 1)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic_and_counts_add_up(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            format in prop_oneof![Just(Format::Usage), Just(Format::Alb), Just(Format::Cloudfront), Just(Format::Waf)],
        ) {
            let mut o = opts(format);
            o.max_line_bytes = 1024;
            let r = run(data, &o);
            prop_assert!(r.stats.records + r.stats.bad.total() <= r.stats.lines);
            prop_assert!(r.stats.evidence <= r.stats.records);
        }
    }

    /// A line of a generated log for the range tests: kinds that end up
    /// differently (records, bad lines, blank lines, long lines).
    fn mixed_line(kind: u8, i: usize) -> String {
        match kind % 7 {
            0 | 1 => usage_line(i),
            2 => usage_line(i) + "\r",
            3 => String::new(),
            4 => "  \t".to_owned(),
            5 => "not json".to_owned(),
            // 1 to 13 KB: some longer than the limit, some read past a
            // range's end in several steps.
            _ => format!("{{\"space\":\"{}\"}}", "x".repeat(1000 + i * 997 % 12_000)),
        }
    }

    /// Scan the file at `path` with regular files cut into `range`-byte
    /// ranges.
    fn run_ranged(path: &std::path::Path, o: &ScanOptions, range: u64) -> ScanReport {
        let mut o = o.clone();
        o.range_bytes = range;
        match scan(vec![Input::path(path)], &o, None) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A regular file read in ranges by the parsers gives the report of
        /// the same bytes read front to back by the reader: the same
        /// observations, counts, bad lines and line numbers, whatever the
        /// range size (smaller than a line, or than the long lines) and the
        /// number of threads.
        #[test]
        fn ranges_of_a_file_read_like_a_stream(
            kinds in proptest::collection::vec(any::<u8>(), 0..60),
            newline_at_end in any::<bool>(),
            range in 1u64..3000,
            threads in 1usize..4,
        ) {
            let lines: Vec<String> =
                kinds.iter().enumerate().map(|(i, &k)| mixed_line(k, i)).collect();
            let mut text = lines.join("\n");
            if newline_at_end {
                text.push('\n');
            }
            let mut o = opts(Format::Usage);
            o.max_line_bytes = 8192;
            o.threads = threads;
            o.max_bad_examples = 1000;
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let path = dir.path().join("usage.log");
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            let stream = match scan(vec![Input::bytes(path.display().to_string(), text.into_bytes())], &o, None) {
                Ok(r) => r,
                Err(e) => panic!("{e}"),
            };
            let ranged = run_ranged(&path, &o, range);
            prop_assert_eq!(&ranged.observations, &stream.observations);
            prop_assert_eq!(&ranged.stats, &stream.stats);
        }
    }

    #[test]
    fn a_plain_file_is_read_in_ranges_and_a_gzip_file_as_a_stream() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = good(2_000);
        let plain = dir.path().join("plain.log");
        // Gzip is found by its magic bytes, not by the file's name.
        let packed = dir.path().join("packed.log");
        std::fs::write(&plain, &text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&packed, gzip(text.as_bytes())).unwrap_or_else(|e| panic!("{e}"));
        let counter = Counter::default();
        let opened = |p: &std::path::Path| match Input::path(p).open(counter.clone(), true) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert!(matches!(opened(&plain), Opened::File { len, .. } if len == text.len() as u64));
        assert!(matches!(opened(&packed), Opened::Stream(_)));
        let o = opts(Format::Usage);
        let a = run_ranged(&plain, &o, 4096);
        let b = run_ranged(&packed, &o, 4096);
        assert_eq!(a.stats.records, 2_000);
        assert_eq!(a.observations, b.observations);
        assert_eq!(a.stats.bytes, b.stats.bytes);
    }

    #[test]
    fn a_line_longer_than_the_limit_across_ranges_is_one_bad_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("long.log");
        let mut text = good(3);
        text.push_str(&"z".repeat(200_000));
        text.push('\n');
        text.push_str(&good(3));
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut o = opts(Format::Usage);
        o.max_line_bytes = 4096;
        for range in [1000, 4096, 65_536, 1 << 20] {
            let r = run_ranged(&path, &o, range);
            assert_eq!(r.stats.records, 6, "{range}");
            assert_eq!(reasons(&r), [(BadReason::LineTooLong, 1)], "{range}");
            assert_eq!(r.stats.bad.examples[0].line, 4, "{range}");
            assert_eq!(r.stats.bytes, text.len() as u64);
        }
    }

    /// A file that shrank after the scan opened it: ranges past its new end
    /// read nothing, and the range across it keeps its whole lines.
    #[test]
    fn a_range_past_the_end_of_a_shrunk_file_reads_what_is_there() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("shrunk.log");
        std::fs::write(&path, "aaaa\nbbbb\ncc").unwrap_or_else(|e| panic!("{e}"));
        let file = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut buf = Vec::new();
        // As if the file had been 40 bytes long when opened.
        let read = read_range(&file, 3, 20, 1024, &mut buf);
        assert!(read.tail.is_none());
        assert_eq!(buf.get(read.lines), Some(&b"bbbb\ncc"[..]));
        let read = read_range(&file, 20, 40, 1024, &mut buf);
        assert_eq!((read.lines, read.tail.is_none()), (0..0, true));
        // A range that starts on a line's first byte owns that line.
        let read = read_range(&file, 5, 7, 1024, &mut buf);
        assert_eq!(buf.get(read.lines), Some(&b"bbbb\n"[..]));
    }

    /// `--strict` on a file read in ranges by two threads stops at the first
    /// bad line in file order, whichever thread meets a bad line first.
    #[test]
    fn strict_on_ranges_reports_the_first_bad_line_of_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("strict.log");
        let mut text = good(40);
        text.push_str("not json\n");
        text.push_str(&good(300));
        text.push_str("{\"timestamp\":\n");
        text.push_str(&good(40));
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut o = opts(Format::Usage);
        o.strict = true;
        o.range_bytes = 2048;
        for _ in 0..20 {
            match scan(vec![Input::path(&path)], &o, None) {
                Err(ScanError::Strict(first)) => {
                    assert_eq!((first.line, first.reason), (41, BadReason::InvalidJson));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
