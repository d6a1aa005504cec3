//! CSR validation + signing: eos-ca in one process (`examples/sign_many.rs`)
//! against Python `cryptography` in one process and `openssl x509 -req`
//! with a process per CSR (as scripts do), on the same CSRs and the same CA
//! key. Every tool must issue exactly one certificate per CSR, and a sample
//! of each tool's certificates must pass `openssl verify -purpose
//! sslclient`, before any time is reported.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Bench, Report, have, ratio, secs, sh, time_cmd};

const PEER: &str = include_str!("ca_peer.py");

pub fn run(bench: &Bench, report: &mut Report) -> Result<()> {
    if !have("openssl") || !python_has_cryptography() {
        bail!("bench-peers ca needs openssl and Python cryptography (pip install cryptography)");
    }
    let n = if bench.quick { 500 } else { 10_000 };
    let runs = if bench.quick { 1 } else { 3 };
    // A process per CSR costs ~50 ms here; openssl's loop runs over the
    // first `m` CSRs and the table compares per-CSR rates.
    let m = if bench.quick { 100 } else { 1000 }.min(n);
    let mut build = crate::cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "eos-ca",
        "--example",
        "sign_many",
    ]);
    crate::run_cmd(build)?;
    let sign_many = bench
        .eos_sec
        .parent()
        .context("release dir")?
        .join("examples/sign_many");
    let peer = bench.data_dir.join("ca_peer.py");
    std::fs::write(&peer, PEER)?;

    let mut table = String::from(
        "## CA: validate + sign\n\n\
         | CSRs | eos-ca, 1 thread | eos-ca, every core | Python cryptography (one process) | openssl x509 -req (a process per CSR) | 1 thread vs Python | every core vs Python | 1 thread vs openssl |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for kind in ["p256", "rsa2048"] {
        let dir = bench.data_dir.join(format!("ca-{kind}-{n}"));
        if !dir.join("csr").exists() {
            let out = Command::new("python3")
                .arg(&peer)
                .args(["gen", path(&dir)?, &n.to_string(), kind])
                .output()?;
            if !out.status.success() {
                bail!("generating CSRs: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let key = dir.join("ca.key");
        let ca = dir.join("ca.pem");
        let csrs = dir.join("csr");
        let sign = |threads: &str| {
            time_cmd(
                || {
                    let mut c = Command::new(&sign_many);
                    c.args(["--threads", threads]);
                    c.args([&key, &ca, &csrs]);
                    c
                },
                runs,
            )
        };
        let (ours, our_out) = sign("1")?;
        let (ours_all, ours_all_out) = sign("0")?;
        let (py, py_out) = time_cmd(
            || {
                let mut c = Command::new("python3");
                c.arg(&peer).arg("sign").args([&key, &ca, &csrs]);
                c
            },
            runs,
        )?;
        let ext = dir.join("ext.cnf");
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\nsubjectAltName=URI:urn:entityos:space:bench:user:x\n",
        )?;
        let script = format!(
            "cd {dir} && rm -f serial.txt && for f in $(ls csr | head -n {m}); do f=csr/$f; \
             openssl x509 -req -in \"$f\" -CA ca.pem -CAkey ca.key -CAserial serial.txt \
             -CAcreateserial -days 1 -extfile ext.cnf -subj \"/O=bench/CN=x\" 2>/dev/null || exit 1; done",
            dir = path(&dir)?
        );
        let (ossl, ossl_out) = time_cmd(|| sh(&script), 1)?;
        check_output("eos-ca", &our_out, n, &dir)?;
        check_output("eos-ca (every core)", &ours_all_out, n, &dir)?;
        check_output("python", &py_out, n, &dir)?;
        check_output("openssl", &ossl_out, m, &dir)?;
        let per = |d: std::time::Duration, k: usize| d / u32::try_from(k).unwrap_or(u32::MAX);
        let (ours_1, py_1, ossl_1) = (per(ours, n), per(py, n), per(ossl, m));
        let _ = writeln!(
            table,
            "| {n} {kind} | {} s ({:.0}/s) | {} s ({:.0}/s) | {} s ({:.0}/s) | {} s for {m} ({:.0}/s) | {} | {} | {} |",
            secs(ours),
            n as f64 / ours.as_secs_f64(),
            secs(ours_all),
            n as f64 / ours_all.as_secs_f64(),
            secs(py),
            n as f64 / py.as_secs_f64(),
            secs(ossl),
            m as f64 / ossl.as_secs_f64(),
            ratio(ours_1, py_1),
            ratio(per(ours_all, n), py_1),
            ratio(ours_1, ossl_1)
        );
    }
    let _ = write!(
        table,
        "\nWall-clock of the whole process including start-up, median of {runs} (openssl: 1 run of \
         the loop over the first {m} CSRs). eos-ca runs `examples/sign_many.rs` with `--threads 1` \
         and with every core (rayon, certificates written in CSR order); Python's script is one \
         thread. Ratios are peer time per CSR / eos-ca time per CSR. Same CSRs, same P-256 CA \
         key, same certificate contents (client-auth profile, 1-day lifetime).\n"
    );
    report.push(table);
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

fn python_has_cryptography() -> bool {
    Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success())
}

/// One certificate per CSR; the first one verifies as a client certificate.
fn check_output(tool: &str, out: &[u8], n: usize, dir: &Path) -> Result<()> {
    let text = String::from_utf8_lossy(out);
    let count = text.matches("-----BEGIN CERTIFICATE-----").count();
    if count != n {
        bail!("{tool} issued {count} certificates for {n} CSRs");
    }
    let first_end = text
        .find("-----END CERTIFICATE-----")
        .context("no certificate")?
        + "-----END CERTIFICATE-----".len();
    let sample = dir.join(format!("sample-{tool}.pem"));
    std::fs::write(&sample, &text[..first_end])?;
    let v = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .arg(&sample)
        .output()?;
    if !v.status.success() {
        bail!(
            "{tool}'s certificate does not verify: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
    Ok(())
}
