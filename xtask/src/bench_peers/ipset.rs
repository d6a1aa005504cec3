//! IP set aggregation: `eos-sec ipset aggregate` against `iprange` (C, Debian
//! package iprange), Python `netaddr.cidr_merge` and the standard library's
//! `ipaddress.collapse_addresses`, on the same generated files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Bench, Report, have, ratio, secs, time_cmd};

/// Deterministic xorshift, so every run and every peer sees the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Addresses clustered the way real traffic is: a few thousand /24-ish
/// networks (offices, carriers, clouds), dense inside, with Zipf-like
/// popularity so that aggregation actually merges runs.
pub fn write_clustered_v4(path: &Path, count: usize, seed: u64) -> Result<()> {
    use std::io::Write;
    if path.exists() {
        return Ok(());
    }
    let mut rng = Rng(seed | 1);
    let clusters: Vec<(u32, u32)> = (0..4096)
        .map(|_| {
            let base = (rng.next() as u32) & 0xffff_ff00;
            // Cluster sizes from /28 to /20.
            let bits = 4 + (rng.next() % 9) as u32;
            (base & !((1u32 << bits) - 1), 1u32 << bits)
        })
        .collect();
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    for _ in 0..count {
        // Zipf-like: cluster index ~ 1/x by squaring a uniform draw.
        let u = (rng.next() % 65536) as f64 / 65536.0;
        let idx = ((u * u) * clusters.len() as f64) as usize;
        let (base, size) = clusters[idx.min(clusters.len() - 1)];
        let a = base.wrapping_add((rng.next() as u32) % size);
        writeln!(
            out,
            "{}.{}.{}.{}",
            a >> 24,
            (a >> 16) & 0xff,
            (a >> 8) & 0xff,
            a & 0xff
        )?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// IPv6 addresses clustered in a few hundred /48s.
pub fn write_clustered_v6(path: &Path, count: usize, seed: u64) -> Result<()> {
    use std::io::Write;
    if path.exists() {
        return Ok(());
    }
    let mut rng = Rng(seed | 1);
    let prefixes: Vec<u64> = (0..512)
        .map(|_| rng.next() & 0x3fff_ffff_ffff_0000 | 0x2000_0000_0000_0000)
        .collect();
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    for _ in 0..count {
        let p = prefixes[(rng.next() % prefixes.len() as u64) as usize];
        let hi = (p as u128) << 64;
        let lo = (rng.next() % 4096) as u128;
        writeln!(out, "{}", std::net::Ipv6Addr::from(hi | lo))?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

const PY_NETADDR: &str = r#"
import sys, netaddr
nets = [netaddr.IPNetwork(l.strip()) for l in open(sys.argv[1]) if l.strip()]
for n in netaddr.cidr_merge(nets):
    print(n.cidr)
"#;

const PY_IPADDRESS: &str = r#"
import sys, ipaddress
v4, v6 = [], []
for l in open(sys.argv[1]):
    l = l.strip()
    if l:
        n = ipaddress.ip_network(l)
        (v4 if n.version == 4 else v6).append(n)
for n in list(ipaddress.collapse_addresses(v4)) + list(ipaddress.collapse_addresses(v6)):
    print(n.with_prefixlen)
"#;

fn normalise(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let l = l.trim();
            // iprange prints bare addresses for /32.
            if l.contains('/') {
                l.to_owned()
            } else if l.contains(':') {
                format!("{l}/128")
            } else {
                format!("{l}/32")
            }
        })
        .filter(|l| !l.is_empty() && l != "/32")
        .collect()
}

struct Row {
    tool: &'static str,
    time: std::time::Duration,
}

fn measure(bench: &Bench, input: &Path, v6: bool, runs: usize) -> Result<(Vec<Row>, usize)> {
    let eos = bench.eos_sec.clone();
    let inp = input.to_path_buf();
    let (t_eos, out_eos) = time_cmd(
        || {
            let mut c = Command::new(&eos);
            c.args(["ipset", "aggregate"]).arg(&inp);
            c
        },
        runs,
    )?;
    let want = normalise(&out_eos);
    let mut rows = vec![Row {
        tool: "eos-sec ipset aggregate",
        time: t_eos,
    }];
    let mut check = |tool: &'static str, out: &[u8], time| -> Result<()> {
        let got = normalise(out);
        if got != want {
            bail!(
                "{tool} disagrees with eos-sec on {}: {} vs {} CIDRs",
                input.display(),
                got.len(),
                want.len()
            );
        }
        rows.push(Row { tool, time });
        Ok(())
    };
    if !v6 && have("iprange") {
        let (t, out) = time_cmd(
            || {
                let mut c = Command::new("iprange");
                c.arg(&inp);
                c
            },
            runs,
        )?;
        check("iprange", &out, t)?;
    }
    let py = |script: &'static str| {
        let inp = inp.clone();
        move || {
            let mut c = Command::new("python3");
            c.args(["-c", script]).arg(&inp);
            c
        }
    };
    // Python takes minutes on the large inputs: one run there is plenty.
    let py_runs = if bench.quick || want.len() > 50_000 {
        1
    } else {
        runs.min(3)
    };
    let has_netaddr = Command::new("python3")
        .args(["-c", "import netaddr"])
        .status()
        .is_ok_and(|s| s.success());
    if has_netaddr {
        let (t, out) = time_cmd(py(PY_NETADDR), py_runs)?;
        check("python netaddr.cidr_merge", &out, t)?;
    }
    let (t, out) = time_cmd(py(PY_IPADDRESS), py_runs)?;
    check("python ipaddress.collapse_addresses", &out, t)?;
    Ok((rows, want.len()))
}

pub fn run(bench: &Bench, report: &mut Report) -> Result<()> {
    let sizes: Vec<(&str, usize, bool)> = if bench.quick {
        vec![("100k IPv4", 100_000, false), ("10k IPv6", 10_000, false)]
    } else {
        vec![
            ("1M IPv4", 1_000_000, false),
            ("10M IPv4", 10_000_000, false),
            ("100k IPv6", 100_000, true),
        ]
    };
    let mut md = String::new();
    writeln!(
        md,
        "### IP set aggregation (`cargo xtask bench-peers --only ipset`)\n"
    )?;
    writeln!(
        md,
        "Whole process, input file in page cache, median of runs; ratio = peer time / eos-sec time (higher is better for eos-sec). Outputs compared for equality first.\n"
    )?;
    writeln!(
        md,
        "| input | CIDRs out | tool | time (s) | eos-sec speed-up |"
    )?;
    writeln!(md, "|---|---:|---|---:|---:|")?;
    for (label, count, is_v6) in sizes {
        let v6 = is_v6 || label.contains("IPv6");
        let file: PathBuf = bench.data_dir.join(format!(
            "ipset-{}-{count}.txt",
            if v6 { "v6" } else { "v4" }
        ));
        if v6 {
            write_clustered_v6(&file, count, 0x6e05)?;
        } else {
            write_clustered_v4(&file, count, 0xe05)?;
        }
        // Warm the page cache.
        let _ = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let runs = if bench.quick { 3 } else { 5 };
        let (rows, cidrs) = measure(bench, &file, v6, runs)?;
        let ours = rows[0].time;
        for r in &rows {
            let speed = if r.tool.starts_with("eos-sec") {
                "1.0×".to_owned()
            } else {
                ratio(ours, r.time)
            };
            writeln!(
                md,
                "| {label} | {cidrs} | {} | {} | {speed} |",
                r.tool,
                secs(r.time)
            )?;
        }
    }
    report.push(md);
    Ok(())
}
