//! `cargo xtask bench-revocation [--samples N] [--debug]`: the revocation
//! lag of the certificate gate. A release (or `--debug`) `eos-sec` with a local CA and a `[gate]`
//! (an S3 bucket and one API Gateway domain on a private moto server) runs
//! `sync --watch`; N certificates are signed first, then revoked one at a
//! time. Each sample runs from just before `eos-sec ca revoke` starts to
//! the watcher's log line saying that CRL was delivered (published to S3
//! and read back on every target, the outbox row marked). Prints p50, p90,
//! p99 and max. Needs `moto_server`, python3 with boto3, and openssl.
//!
//! moto has no ELBv2 trust stores, so the trust-store calls
//! (DescribeTrustStores, AddTrustStoreRevocations, RemoveTrustStoreRevocations,
//! DescribeTrustStoreRevocations) are not in the measured path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Killed, check, free_port};

struct Env {
    bin: PathBuf,
    dir: PathBuf,
    endpoint: String,
}

impl Env {
    fn eos(&self, args: &[&str]) -> Command {
        let mut c = crate::eos_sec(&self.bin, &self.dir, args);
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    fn boto3(&self, script: &str) -> Result<String> {
        let mut c = Command::new("python3");
        c.args([
            "-c",
            &format!(
                "import boto3, json\nkw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{script}",
                self.endpoint
            ),
        ]);
        check(c)
    }

    /// A fresh P-256 key and a certificate for acme/`user`; its serial.
    fn sign(&self, user: &str) -> Result<String> {
        let mut key = Command::new("openssl");
        key.current_dir(&self.dir).args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/CN=ignored",
            "-out",
            "r.csr",
        ]);
        check(key)?;
        let out = check(self.eos(&[
            "--json",
            "ca",
            "sign",
            "--csr",
            "r.csr",
            "--space",
            "acme",
            "--user",
            user,
            "--profile",
            "device",
        ]))?;
        let serial = out
            .split("\"serial\":")
            .nth(1)
            .and_then(|s| s.split('"').nth(1))
            .context("no serial in `ca sign --json`")?;
        Ok(serial.to_owned())
    }
}

/// The watcher's "CRL delivered" lines, each with the CRL number and when
/// it was read.
fn delivered_lines(watch: &mut Child) -> Result<Receiver<(u64, Instant)>> {
    let stderr = watch.stderr.take().context("no stderr")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let at = Instant::now();
            if !line.contains("certificate gate: CRL delivered") {
                continue;
            }
            let n = line
                .split("crl=Some(")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(n) = n
                && tx.send((n, at)).is_err()
            {
                return;
            }
        }
    });
    Ok(rx)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted.get(i).copied().unwrap_or_default()
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let samples: usize = args
        .iter()
        .position(|a| a == "--samples")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(100), |s| s.parse())
        .context("--samples N")?;
    // `--debug`: the debug build (where a release build does not fit).
    let profile = if args.iter().any(|a| a == "--debug") {
        "debug"
    } else {
        "release"
    };
    let mut build = crate::cargo();
    build.args(["build", "-p", "eos-sec"]);
    if profile == "release" {
        build.arg("--release");
    }
    crate::run_cmd(build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = std::env::temp_dir().join(format!("eos-sec-bench-revocation-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let _moto = Killed(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("moto_server (pip install 'moto[server]')")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("moto_server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let env = Env {
        bin: target.join(profile).join("eos-sec"),
        dir: dir.clone(),
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    std::fs::write(
        dir.join("eos-sec.toml"),
        format!(
            "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[gate]\nbucket = \"trust\"\n[[gate.domains]]\nname = \"api.acme.example\"\n",
            env.endpoint
        ),
    )?;
    env.boto3("boto3.client('s3', **kw).create_bucket(Bucket='trust')")?;
    check(env.eos(&["ca", "init", "--env", "dev"]))?;
    // The domain already points at the bundle's object, as after a
    // `gate publish` (moto cannot update a domain's truststore).
    let bundle = dir.join("bundle.json");
    std::fs::write(&bundle, check(env.eos(&["--json", "ca", "bundle"]))?)?;
    env.boto3(&format!(
        "import hashlib\n\
         sha = hashlib.sha256(json.load(open('{}'))['pem'].encode()).hexdigest()\n\
         boto3.client('apigatewayv2', **kw).create_domain_name(DomainName='api.acme.example', \
         DomainNameConfigurations=[{{'CertificateArn': 'arn:aws:acm:us-east-1:111122223333:certificate/x', 'EndpointType': 'REGIONAL'}}], \
         MutualTlsAuthentication={{'TruststoreUri': 's3://trust/eos-sec/bundle/%s.pem' % sha}})",
        bundle.display()
    ))?;
    eprintln!("signing {samples} certificates");
    let serials = (0..samples)
        .map(|i| env.sign(&format!("user{i}")))
        .collect::<Result<Vec<_>>>()?;

    let mut watch = env.eos(&["sync", "--watch"]);
    watch.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut watch = Killed(watch.spawn().context("sync --watch")?);
    let delivered = delivered_lines(&mut watch.0)?;
    std::thread::sleep(Duration::from_secs(1));
    let mut lags = Vec::with_capacity(samples);
    for (i, serial) in serials.iter().enumerate() {
        let start = Instant::now();
        check(env.eos(&[
            "--json",
            "ca",
            "revoke",
            serial,
            "--reason",
            "key-compromise",
        ]))?;
        // CRL 1 is `ca init`'s; revocation i issues CRL i + 2.
        let want = i as u64 + 2;
        loop {
            let (n, at) = delivered
                .recv_timeout(Duration::from_secs(30))
                .with_context(|| format!("CRL {want} not delivered within 30 s"))?;
            if n >= want {
                lags.push(at - start);
                break;
            }
        }
    }
    drop(watch);
    let _ = std::fs::remove_dir_all(&dir);
    lags.sort();
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    println!(
        "revocation lag, {samples} revocations, {profile} build (ca revoke -> CRL in S3 and read back on 1 API Gateway domain, moto): p50 {}, p90 {}, p99 {}, max {}",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.90)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default())
    );
    Ok(())
}
