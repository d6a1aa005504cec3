//! `cargo xtask bench-authz [--seconds N] [--connections N] [--debug] [--no-decision-log] [--tcp]`:
//! what the decision point costs behind nginx (issue 23). One nginx, one
//! run, three TLS servers side by side, all proxying to the same upstream
//! (a `return 200` server in the same nginx):
//!
//! - **alone**: nginx with mutual TLS alone (`ssl_verify_client optional`
//!   against the entityOS CA and its CRL), no decision point;
//! - **authz**: the configuration `eos-sec authz config nginx` prints,
//!   `auth_request` to a release `eos-sec authz serve` (decision log on)
//!   on a Unix socket (`--tcp`: on loopback TCP);
//! - **floor** (saturated runs only): "alone" plus an `auth_request` to a
//!   stub in the same nginx that answers 204 at once, on the same
//!   transport, with the generated
//!   configuration's subrequest settings: what any `auth_request` decision
//!   point costs before it decides anything. The last column, eos-sec's
//!   requests/s over the stub's, is the part of the cost that is eos-sec's.
//!
//! Two spaces: `ipco` in mode `ip` (client 127.0.0.1 in its set, no
//! certificate) and `certco` in mode `cert` (a client certificate from
//! `eos-sec ca sign`). Two workloads: keep-alive, and a new TLS handshake
//! per request. For each, `oha` first saturates both servers (requests/s),
//! then sends half the lower of the two rates to each (latency at a fixed
//! load, p50/p99). Every answer must be 200, or the run fails. Prints a
//! Markdown table: throughput kept, p99 added, and the CPU time (user +
//! system, from `/proc`) that nginx's workers spent per request in each
//! saturated run and the service per decision — figures that hold however
//! busy the cores were with other work, where requests/s do not. Needs nginx, openssl, and
//! `oha` on PATH or in `$OHA` (`cargo install oha`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Killed, check, free_port};

fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not come up on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} needs a number")),
    }
}

struct Env {
    bin: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn eos(&self, args: &[&str]) -> Command {
        crate::eos_sec(&self.bin, &self.dir, args)
    }

    fn openssl(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("openssl");
        c.current_dir(&self.dir).args(args);
        check(c)
    }

    fn p(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// One oha run's figures.
struct Run {
    rps: f64,
    /// Requests answered in the run.
    requests: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// CPU time (user + system) used so far by the processes `pids`, in
/// seconds: from `/proc/<pid>/stat`, so the cost per request does not
/// depend on what else the cores were doing.
fn cpu_seconds(pids: &[u32], tick: f64) -> f64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            // Fields after the command name (which may hold spaces) in
            // parentheses: state is the 1st, utime the 12th, stime the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / tick)
        })
        .sum()
}

/// The processes whose parent is `parent` (nginx's workers).
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`).
fn clock_tick() -> Result<f64> {
    let out = check({
        let mut c = Command::new("getconf");
        c.arg("CLK_TCK");
        c
    })?;
    out.trim().parse().context("getconf CLK_TCK")
}

/// The loaded machine, for the record.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

struct Workload<'a> {
    space: &'a str,
    cert: bool,
    keepalive: bool,
}

impl Workload<'_> {
    fn label(&self) -> String {
        format!(
            "{} ({}), {}",
            self.space,
            if self.cert {
                "mode cert, client certificate"
            } else {
                "mode ip, address in the set"
            },
            if self.keepalive {
                "keep-alive"
            } else {
                "new handshake per request"
            }
        )
    }
}

struct Oha<'a> {
    bin: PathBuf,
    env: &'a Env,
    seconds: u64,
    connections: u64,
}

impl Oha<'_> {
    /// `w` against nginx on `port`, saturated or at `rate` requests/s.
    fn run(&self, w: &Workload<'_>, port: u16, rate: Option<f64>) -> Result<Run> {
        let host = format!("{}.eos.test", w.space);
        let mut c = Command::new(&self.bin);
        c.args([
            "--no-tui",
            "--output-format",
            "json",
            "-z",
            &format!("{}s", self.seconds),
            "-c",
            &self.connections.to_string(),
            "--cacert",
            &self.env.p("server.pem"),
            "--connect-to",
            &format!("{host}:{port}:127.0.0.1:{port}"),
        ]);
        if w.cert {
            c.args([
                "--cert",
                &self.env.p("client.pem"),
                "--key",
                &self.env.p("client.key"),
            ]);
        }
        if !w.keepalive {
            c.arg("--disable-keepalive");
        }
        if let Some(q) = rate {
            c.args(["-q", &format!("{q:.0}"), "--latency-correction"]);
        }
        c.arg(format!("https://{host}:{port}/"));
        let out = check(c)?;
        let v: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("oha's JSON: {out}"))?;
        // Every answer 200: a refusal or an error would be measured as
        // speed.
        let codes = v["statusCodeDistribution"]
            .as_object()
            .context("no statusCodeDistribution")?;
        let other: Vec<_> = codes.iter().filter(|(k, _)| *k != "200").collect();
        let errors = v["errorDistribution"].as_object().map_or(0, |e| {
            e.iter()
                // The requests cut off by the end of the run.
                .filter(|(k, _)| !k.contains("aborted due to deadline"))
                .count()
        });
        if codes.get("200").is_none() || !other.is_empty() || errors > 0 {
            bail!(
                "{}: port {port}: answers {codes:?}, errors {}",
                w.label(),
                v["errorDistribution"]
            );
        }
        let ms = |k: &str| v["latencyPercentiles"][k].as_f64().map(|s| s * 1000.0);
        Ok(Run {
            rps: v["summary"]["requestsPerSec"]
                .as_f64()
                .context("no requestsPerSec")?,
            requests: codes.get("200").and_then(|n| n.as_f64()).unwrap_or(0.0),
            p50_ms: ms("p50").context("no p50")?,
            p99_ms: ms("p99").context("no p99")?,
        })
    }
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let seconds: u64 = flag(args, "--seconds", 10)?;
    let connections: u64 = flag(args, "--connections", 32)?;
    let profile = if args.iter().any(|a| a == "--debug") {
        "debug"
    } else {
        "release"
    };
    let oha = std::env::var_os("OHA").map_or_else(|| PathBuf::from("oha"), PathBuf::from);
    check({
        let mut c = Command::new(&oha);
        c.arg("--version");
        c
    })
    .context("oha (cargo install oha; or OHA=/path/to/oha)")?;
    let mut build = crate::cargo();
    build.args(["build", "-p", "eos-sec"]);
    if profile == "release" {
        build.arg("--release");
    }
    crate::run_cmd(build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = std::env::temp_dir().join(format!("eos-sec-bench-authz-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nginx"))?;
    let env = Env {
        bin: target.join(profile).join("eos-sec"),
        dir: dir.clone(),
    };
    let oha = Oha {
        bin: oha,
        env: &env,
        seconds,
        connections,
    };
    let decision_log = !args.iter().any(|a| a == "--no-decision-log");
    let tcp = args.iter().any(|a| a == "--tcp");
    let result = bench(&env, &oha, profile, decision_log, tcp);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(env: &Env, oha: &Oha<'_>, profile: &str, decision_log: bool, tcp: bool) -> Result<()> {
    let authz_port = free_port()?;
    let (authz_listen, stub_listen) = if tcp {
        (
            format!("127.0.0.1:{authz_port}"),
            format!("127.0.0.1:{}", free_port()?),
        )
    } else {
        (
            format!("unix:{}", env.p("authz.sock")),
            format!("unix:{}", env.p("stub.sock")),
        )
    };
    std::fs::write(
        env.dir.join("eos-sec.toml"),
        format!("[authz]\nlisten = \"{authz_listen}\"\ntrusted_proxies = [\"127.0.0.1\"]\n"),
    )?;
    check(env.eos(&["ca", "init", "--env", "dev"]))?;
    check(env.eos(&[
        "rules",
        "add",
        "--space",
        "ipco",
        "--cidr",
        "127.0.0.1",
        "--label",
        "bench",
        "--declared-by",
        "admin@ipco.example",
    ]))?;
    check(env.eos(&["apply", "--yes"]))?;
    std::fs::write(
        env.dir.join("policy.toml"),
        "[web_acl]\nname = \"eos-bench\"\n\n[routing]\nby = \"host-label\"\ndomain = \"eos.test\"\n\n\
         [cert_gate]\nca_bundle = \"state/ca/ca.pem\"\ncrl = [\"state/ca/crl.pem\"]\n\n\
         [spaces.ipco]\nmode = \"ip\"\nstage = \"enforce\"\n\n\
         [spaces.certco]\nmode = \"cert\"\nstage = \"enforce\"\n",
    )?;
    // The client's certificate, from the CA, and nginx's own.
    env.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "client.key",
        "-subj",
        "/CN=bench",
        "-out",
        "client.csr",
    ])?;
    check(env.eos(&[
        "ca",
        "sign",
        "--csr",
        "client.csr",
        "--space",
        "certco",
        "--user",
        "bench",
        "--profile",
        "cli",
        "--out",
        "client.pem",
    ]))?;
    env.openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-subj",
        "/CN=eos.test",
        "-addext",
        "subjectAltName=DNS:*.eos.test",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ])?;

    let log = std::fs::File::create(env.dir.join("authz.log"))?;
    let _authz = Killed(
        env.eos(&["authz", "serve", "--policy", "policy.toml"])
            // `--no-decision-log`: what the log costs, by its absence.
            .args(if decision_log { &[][..] } else { &["-q"][..] })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("eos-sec authz serve")?,
    );
    if tcp {
        wait_for_port(authz_port, "eos-sec authz serve")?;
    } else {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(env.dir.join("authz.sock")).is_err() {
            if Instant::now() > deadline {
                bail!("eos-sec authz serve did not come up on {authz_listen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // nginx started as root runs its workers as nobody:nogroup; the
        // socket (mode 0660) is for its group, as an operator would set it.
        let root = check({
            let mut c = Command::new("id");
            c.arg("-u");
            c
        })?;
        if root.trim() == "0" {
            check({
                let mut c = Command::new("chgrp");
                c.arg("nogroup").arg(env.dir.join("authz.sock"));
                c
            })?;
        }
    }

    let (with_port, alone_port, upstream_port) = (free_port()?, free_port()?, free_port()?);
    let floor_port = free_port()?;
    let upstream = format!("http://127.0.0.1:{upstream_port}");
    let generated = check(env.eos(&[
        "authz",
        "config",
        "nginx",
        "--listen",
        &format!("127.0.0.1:{with_port}"),
        "--server-name",
        "*.eos.test",
        "--tls-cert",
        "server.pem",
        "--tls-key",
        "server.key",
        "--client-ca",
        "state/ca/ca.pem",
        "--upstream",
        &upstream,
    ]))?;
    std::fs::write(env.dir.join("eos-authz.conf"), generated)?;
    let d = env.p("nginx");
    std::fs::write(
        env.dir.join("nginx/nginx.conf"),
        format!(
            r#"daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # With the decision point: `eos-sec authz config nginx`, as printed.
    include {conf};
    # Mutual TLS alone: nginx verifies the chain and the CRL itself.
    server {{
        listen 127.0.0.1:{alone_port} ssl;
        server_name *.eos.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate {ca};
        ssl_crl {crl};
        ssl_verify_client optional;
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
    # The floor: the same mutual TLS as "alone" plus an `auth_request` to a
    # stub that answers 204 at once, with the generated configuration's
    # subrequest settings. No decision point can cost less than this.
    upstream floor_stub {{
        server {stub_listen};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{floor_port} ssl;
        server_name *.eos.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate {ca};
        ssl_crl {crl};
        ssl_verify_client optional;
        location / {{
            auth_request /_floor;
            proxy_pass {upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
        location = /_floor {{
            internal;
            proxy_pass http://floor_stub;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen {stub_listen};
        location / {{ return 204; }}
    }}
    server {{
        listen 127.0.0.1:{upstream_port};
        location / {{ return 200 "ok"; }}
    }}
}}
"#,
            conf = env.p("eos-authz.conf"),
            cert = env.p("server.pem"),
            key = env.p("server.key"),
            ca = env.p("state/ca/ca.pem"),
            crl = env.p("state/ca/crl.pem"),
        ),
    )?;
    let _nginx = Killed(
        Command::new("nginx")
            .args([
                "-p",
                &d,
                "-c",
                &format!("{d}/nginx.conf"),
                "-e",
                &format!("{d}/error.log"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("nginx")?,
    );
    wait_for_port(with_port, "nginx")?;
    wait_for_port(alone_port, "nginx")?;
    wait_for_port(floor_port, "nginx")?;
    let tick = clock_tick()?;
    let workers = children(_nginx.0.id());
    if workers.is_empty() {
        bail!("nginx has no worker processes to measure");
    }
    let authz_pid = _authz.0.id();

    println!(
        "eos-sec ({profile}) authz serve on {} (decision log {}) behind nginx vs nginx with mutual TLS alone; \
         oha -c {} for {} s per run; load average before: {}",
        if tcp { "loopback TCP" } else { "a Unix socket" },
        if decision_log { "on" } else { "off" },
        oha.connections,
        oha.seconds,
        loadavg()
    );
    println!();
    println!(
        "| workload | nginx alone req/s | + eos-sec req/s | throughput kept | \
         at fixed req/s | p50 alone → + eos-sec (ms) | p99 alone → + eos-sec (ms) | p99 added (ms) | \
         + 204 stub req/s | kept by the stub | eos-sec / stub | \
         nginx CPU µs/req alone / + stub / + eos-sec | eos-sec CPU µs/decision |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (space, cert) in [("ipco", false), ("certco", true)] {
        for keepalive in [true, false] {
            let w = Workload {
                space,
                cert,
                keepalive,
            };
            // CPU per request: nginx's workers in every run, the
            // service's in the run through it.
            let measured = |port: u16| -> Result<(Run, f64, f64)> {
                let (n0, a0) = (cpu_seconds(&workers, tick), cpu_seconds(&[authz_pid], tick));
                let r = oha.run(&w, port, None)?;
                let (n1, a1) = (cpu_seconds(&workers, tick), cpu_seconds(&[authz_pid], tick));
                let per = |cpu: f64| 1e6 * cpu / r.requests.max(1.0);
                let (nginx_us, authz_us) = (per(n1 - n0), per(a1 - a0));
                Ok((r, nginx_us, authz_us))
            };
            let (alone, alone_nginx_us, _) = measured(alone_port)?;
            let (with, with_nginx_us, authz_us) = measured(with_port)?;
            let (floor, floor_nginx_us, _) = measured(floor_port)?;
            let rate = alone.rps.min(with.rps) / 2.0;
            let alone_at = oha.run(&w, alone_port, Some(rate))?;
            let with_at = oha.run(&w, with_port, Some(rate))?;
            println!(
                "| {} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.2} → {:.2} | {:.2} → {:.2} | {:+.2} | {:.0} | {:.0}% | {:.0}% | {:.0} / {:.0} / {:.0} | {:.1} |",
                w.label(),
                alone.rps,
                with.rps,
                100.0 * with.rps / alone.rps,
                rate,
                alone_at.p50_ms,
                with_at.p50_ms,
                alone_at.p99_ms,
                with_at.p99_ms,
                with_at.p99_ms - alone_at.p99_ms,
                floor.rps,
                100.0 * floor.rps / alone.rps,
                100.0 * with.rps / floor.rps,
                alone_nginx_us,
                floor_nginx_us,
                with_nginx_us,
                authz_us,
            );
        }
    }
    println!();
    let metrics = check({
        let mut c = Command::new("curl");
        c.arg("--silent");
        if tcp {
            c.args(["--connect-to", &format!("authz:80:127.0.0.1:{authz_port}")]);
        } else {
            c.args(["--unix-socket", &env.p("authz.sock")]);
        }
        c.arg("http://authz/metrics");
        c
    })?;
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("eos_authz_decisions_total") || l.starts_with("eos_authz_chain_"))
    {
        println!("    {l}");
    }
    println!("load average after: {}", loadavg());
    Ok(())
}
