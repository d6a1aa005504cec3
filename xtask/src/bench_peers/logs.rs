//! Log extraction: the per (space, client address) request count of a usage
//! log and an ALB log, by `eos-sec logs scan` and by what a user would
//! otherwise write — `jq`, `rg -o | sort | uniq -c`, `mawk`, a plain Python
//! script — with `cat FILE > /dev/null` as the floor, on the same generated
//! files in one run. Answers are compared before any time is reported.
//!
//! The generated logs are built so that every tool's naive count is the
//! right one: no trusted proxies (the peer address is the client), every
//! request authenticated with a 2xx/3xx status (all of them evidence), and
//! the few malformed lines truncated before the space field, so no tool
//! counts them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Bench, Report, have, ratio, secs, sh, time_cmd};

/// Deterministic xorshift64*, so every run and every tool sees the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Zipf-like rank in `0..n`: squaring a uniform draw twice puts most
    /// of the mass on the first ranks and leaves a long tail.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u * n as f64) as usize).min(n - 1)
    }
}

const SPACES: usize = 300;
const ADDRESSES: usize = 40_000;
/// One malformed line in this many.
const MALFORMED_EVERY: u64 = 200_000;

/// Client addresses: mostly IPv4, one in eight IPv6.
fn addresses(rng: &mut Rng) -> Vec<String> {
    (0..ADDRESSES)
        .map(|i| {
            let r = rng.next();
            if i % 8 == 7 {
                format!(
                    "2001:db8:{:x}:{:x}::{:x}",
                    ((r >> 16) & 0xfffe) + 1,
                    ((r >> 32) & 0xfe) + 1,
                    (r & 0xfff) + 1
                )
            } else {
                format!(
                    "{}.{}.{}.{}",
                    1 + (r >> 24) % 223,
                    (r >> 16) & 0xff,
                    (r >> 8) & 0xff,
                    1 + (r & 0xff) % 254
                )
            }
        })
        .collect()
}

fn space_name(i: usize) -> String {
    format!("space-{i:03}")
}

const PATHS: [&str; 6] = [
    "/rpc/setup_user_search",
    "/rpc/contact_business_search",
    "/rpc/action_search",
    "/rpc/core_debug_log_save",
    "/rpc/document_search",
    "/rpc/core_space_info",
];

/// Write a log of about `bytes` bytes: `line(rng, i, space, ip)` makes each
/// line. Each address mostly calls one "home" space.
fn generate(
    path: &Path,
    bytes: u64,
    seed: u64,
    mut line: impl FnMut(&mut Rng, u64, &str, &str, &mut Vec<u8>),
    malformed: &str,
) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut rng = Rng(seed | 1);
    let addrs = addresses(&mut rng);
    let home: Vec<usize> = (0..ADDRESSES).map(|_| rng.zipf(SPACES)).collect();
    let spaces: Vec<String> = (0..SPACES).map(space_name).collect();
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut written: u64 = 0;
    let mut buf = Vec::with_capacity(512);
    let mut i: u64 = 0;
    while written < bytes {
        buf.clear();
        if i % MALFORMED_EVERY == MALFORMED_EVERY / 2 {
            buf.extend_from_slice(malformed.as_bytes());
        } else {
            let a = rng.zipf(ADDRESSES);
            // One request in 16 goes to some other space.
            let s = if rng.next().is_multiple_of(16) {
                rng.zipf(SPACES)
            } else {
                home[a]
            };
            line(&mut rng, i, &spaces[s], &addrs[a], &mut buf);
        }
        buf.push(b'\n');
        out.write_all(&buf)?;
        written += buf.len() as u64;
        i += 1;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A time within November 2026, advancing with `i`.
fn stamp(i: u64, rng: &mut Rng) -> String {
    let secs = 1_793_491_200 + i / 4 + rng.next() % 3; // 2026-11-01
    let day = secs / 86_400 - 20_758; // days since 2026-11-01
    let tod = secs % 86_400;
    format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + day % 30,
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        rng.next() % 1000
    )
}

fn usage_line(rng: &mut Rng, i: u64, space: &str, ip: &str, buf: &mut Vec<u8>) {
    let status = if rng.next().is_multiple_of(10) {
        302
    } else {
        200
    };
    let _ = write!(
        buf,
        "{{\"timestamp\":\"{}\",\"space\":\"{space}\",\"user\":\"user{}@{space}.example\",\"method\":\"POST\",\"path\":\"{}\",\"status\":{status},\"source_ip\":\"{ip}\",\"host\":\"{space}.entityos.cloud\",\"duration_ms\":{},\"request_id\":\"req-{i:010}\"}}",
        stamp(i, rng),
        rng.next() % 7,
        PATHS[(rng.next() % PATHS.len() as u64) as usize],
        rng.next() % 900,
    );
}

fn alb_line(rng: &mut Rng, i: u64, space: &str, ip: &str, buf: &mut Vec<u8>) {
    let status = if rng.next().is_multiple_of(10) {
        302
    } else {
        200
    };
    let t = stamp(i, rng);
    let t = t.trim_end_matches('Z');
    let _ = write!(
        buf,
        "https {t}000Z app/eos-platform/50dc6c495c0c9188 {ip}:{} 10.0.1.5:8080 0.001 0.{:03} 0.000 {status} {status} 311 {} \"POST https://{space}.entityos.cloud:443{} HTTP/1.1\" \"eos-agent/2.4\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/eos-api/73e2d6bc24d8a067 \"Root=1-6545f1a1-{i:024x}\" \"{space}.entityos.cloud\" \"arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012\" 0 {t}000Z \"forward\" \"-\" \"-\" \"10.0.1.5:8080\" \"{status}\" \"-\" \"-\"",
        1024 + rng.next() % 60_000,
        rng.next() % 1000,
        200 + rng.next() % 4000,
        PATHS[(rng.next() % PATHS.len() as u64) as usize],
    );
}

const PY_USAGE: &str = r#"
import sys, json
from collections import Counter
c = Counter()
with open(sys.argv[1], 'rb') as f:
    for line in f:
        try:
            r = json.loads(line)
            c[(r['space'], r['source_ip'])] += 1
        except (ValueError, KeyError, TypeError):
            pass
for (s, ip), n in c.items():
    print(s, ip, n)
"#;

const PY_ALB: &str = r#"
import sys
from collections import Counter
c = Counter()
with open(sys.argv[1]) as f:
    for line in f:
        p = line.split(' ')
        try:
            ip = p[3].rsplit(':', 1)[0]
            host = line.split('"', 2)[1].split(' ')[1].split('/')[2]
            c[(host.split('.')[0], ip)] += 1
        except IndexError:
            pass
for (s, ip), n in c.items():
    print(s, ip, n)
"#;

/// `space ip count` lines, sorted, from any tool's output; `uniq -c` puts
/// the count first.
fn normalise(out: &[u8], count_first: bool) -> Vec<(String, String, u64)> {
    let mut rows: Vec<(String, String, u64)> = String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split([' ', ',']).filter(|s| !s.is_empty()).collect();
            let (s, ip, n) = if count_first {
                (f.get(1)?, f.get(2)?, f.first()?)
            } else {
                (f.first()?, f.get(1)?, f.get(2)?)
            };
            Some(((*s).to_owned(), (*ip).to_owned(), n.parse().ok()?))
        })
        .collect();
    rows.sort();
    rows
}

struct Row {
    tool: String,
    time: Duration,
}

fn measure(
    bench: &Bench,
    file: &Path,
    format: &str,
    runs: usize,
) -> Result<(Vec<Row>, usize, Option<Duration>)> {
    let f = file.display().to_string();
    let eos = bench.eos_sec.clone();
    let (t, out) = time_cmd(
        || {
            let mut c = Command::new(&eos);
            c.args(["logs", "scan", "--format", format, "--csv", &f]);
            c
        },
        runs,
    )?;
    // CSV header and the columns after `requests` are dropped by `normalise`.
    let want = normalise(&out, false);
    if want.is_empty() {
        bail!("eos-sec found nothing in {f}");
    }
    let mut rows = vec![Row {
        tool: format!("eos-sec logs scan --format {format}"),
        time: t,
    }];
    let mut peer = |tool: &str, script: String, count_first: bool, runs: usize| -> Result<()> {
        let (t, out) = time_cmd(|| sh(&script), runs)?;
        let got = normalise(&out, count_first);
        if got != want {
            let first_diff = got.iter().zip(&want).find(|(a, b)| a != b);
            bail!(
                "{tool} disagrees with eos-sec on {f}: {} vs {} pairs; first difference {first_diff:?}",
                got.len(),
                want.len()
            );
        }
        rows.push(Row {
            tool: tool.to_owned(),
            time: t,
        });
        Ok(())
    };
    // The slow peers run once on the large inputs.
    let slow_runs = 1;
    let py_dir = bench.data_dir.join("logs_peer.py");
    if format == "usage" {
        if have("jq") {
            // jq's own `reduce` into an object copies it per update (minutes
            // at 32 MiB), so the count is done the way people do it with
            // jq: extract, then `sort | uniq -c`.
            peer(
                "jq \\| sort \\| uniq -c",
                format!(
                    "jq -R -r 'fromjson? | select(type == \"object\") | \"\\(.space) \\(.source_ip)\"' {f} | LC_ALL=C sort | LC_ALL=C uniq -c"
                ),
                true,
                slow_runs,
            )?;
        }
        if have("rg") {
            peer(
                "rg -o \\| sort \\| uniq -c",
                format!(
                    "rg -o --no-filename -r '$1 $2' '\"space\":\"([^\"]*)\".*\"source_ip\":\"([^\"]*)\"' {f} | LC_ALL=C sort | LC_ALL=C uniq -c"
                ),
                true,
                runs,
            )?;
        }
        if have("mawk") {
            peer(
                "mawk",
                format!(
                    "mawk -F'\"' '{{ s = \"\"; ip = \"\"; for (i = 2; i < NF; i++) {{ if ($i == \"space\") s = $(i + 2); else if ($i == \"source_ip\") ip = $(i + 2) }} if (s != \"\" && ip != \"\") n[s \" \" ip]++ }} END {{ for (k in n) print k, n[k] }}' {f}"
                ),
                false,
                runs,
            )?;
        }
        std::fs::write(&py_dir, PY_USAGE)?;
    } else {
        if have("rg") {
            peer(
                "rg -o \\| sort \\| uniq -c",
                format!(
                    "rg -o --no-filename -r '$2 $1' '^\\S+ \\S+ \\S+ (\\S+):[0-9]+ .*?\"[A-Z]+ https?://([^./:]+)' {f} | LC_ALL=C sort | LC_ALL=C uniq -c"
                ),
                true,
                runs,
            )?;
        }
        if have("mawk") {
            peer(
                "mawk",
                format!(
                    "mawk '{{ ip = $4; sub(/:[0-9]+$/, \"\", ip); split($14, u, \"/\"); split(u[3], h, \".\"); if (NF >= 14 && h[1] != \"\") n[h[1] \" \" ip]++ }} END {{ for (k in n) print k, n[k] }}' {f}"
                ),
                false,
                runs,
            )?;
        }
        std::fs::write(&py_dir, PY_ALB)?;
    }
    peer(
        "python3 (plain script)",
        format!("python3 {} {f}", py_dir.display()),
        false,
        slow_runs,
    )?;
    let (cat, _) = time_cmd(|| sh(&format!("cat {f} > /dev/null")), runs)?;
    Ok((rows, want.len(), Some(cat)))
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

pub fn run(bench: &Bench, report: &mut Report) -> Result<()> {
    let bytes: u64 = if bench.quick { 32 << 20 } else { 1 << 30 };
    let label = if bench.quick { "32 MiB" } else { "1 GiB" };
    let runs = 3;
    let mut md = String::new();
    writeln!(
        md,
        "### Log extraction (`cargo xtask bench-peers --only logs{}`)\n",
        if bench.quick { " --quick" } else { "" }
    )?;
    writeln!(
        md,
        "Per (space, client address) request count; whole process, file in page cache, median of {runs} runs (jq and Python: one run at full size); speed-up = peer time / eos-sec time. Answers compared for equality first. {SPACES} spaces, {ADDRESSES} addresses (1 in 8 IPv6), Zipf-like popularity, one malformed line in {MALFORMED_EVERY}.\n"
    )?;
    writeln!(
        md,
        "| log | pairs | tool | time (s) | MiB/s | eos-sec speed-up (peer time / eos-sec time) | load (1 min) |"
    )?;
    writeln!(md, "|---|---:|---|---:|---:|---:|---:|")?;
    let inputs: [(&str, &str, u64); 2] = [("usage", "jsonl", 0x10c5), ("alb", "log", 0xa1b)];
    for (format, ext, seed) in inputs {
        let file = bench
            .data_dir
            .join(format!("logs-{format}-{}.{ext}", bytes >> 20));
        match format {
            "usage" => generate(&file, bytes, seed, usage_line, "{\"timestamp\":\"2026-11-0")?,
            _ => generate(
                &file,
                bytes,
                seed,
                alb_line,
                "https 2026-11-02T08:01:37.001000Z app/eos-platform/50dc6c495c0c9188",
            )?,
        }
        let size = std::fs::metadata(&file)
            .with_context(|| format!("{}", file.display()))?
            .len();
        // Warm the page cache.
        let _ = time_cmd(|| sh(&format!("cat {} > /dev/null", file.display())), 1)?;
        let (rows, pairs, cat) = measure(bench, &file, format, runs)?;
        let ours = rows[0].time;
        #[allow(clippy::cast_precision_loss)]
        let mibs = |t: Duration| format!("{:.0}", size as f64 / (1 << 20) as f64 / t.as_secs_f64());
        let l = load();
        for r in &rows {
            let speed = if r.tool.starts_with("eos-sec") {
                "1.0×".to_owned()
            } else {
                ratio(ours, r.time)
            };
            writeln!(
                md,
                "| {format} {label} | {pairs} | {} | {} | {} | {speed} | {l} |",
                r.tool,
                secs(r.time),
                mibs(r.time)
            )?;
        }
        if let Some(cat) = cat {
            writeln!(
                md,
                "| {format} {label} | — | cat FILE > /dev/null | {} | {} | eos-sec takes {:.1}× | {l} |",
                secs(cat),
                mibs(cat),
                ours.as_secs_f64() / cat.as_secs_f64().max(1e-9)
            )?;
        }
    }
    report.push(md);
    Ok(())
}
