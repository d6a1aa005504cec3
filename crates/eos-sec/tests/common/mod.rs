//! What the CLI tests share: the example data, a fresh state directory with
//! its own config file, and running the binary in it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `examples/data`.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data")
}

/// A path under `examples/data` as a string argument.
pub fn example(name: &str) -> String {
    examples().join(name).display().to_string()
}

/// What a run printed and returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A state directory with a config file `eos-sec.toml` holding `config`.
pub struct State {
    pub dir: tempfile::TempDir,
    pub env: Vec<(&'static str, String)>,
}

impl State {
    pub fn new(config: &str) -> State {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("eos-sec.toml"), config).unwrap();
        State {
            dir,
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `eos-sec` with this state directory and config, run in it.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
        c.env("EOS_SEC_STATE_DIR", self.path().join("state"))
            .env("EOS_SEC_CONFIG", self.path().join("eos-sec.toml"))
            .env_remove("NO_COLOR")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(self.path());
        c
    }

    /// Run `eos-sec args...` with this state directory and config, in it.
    pub fn run(&self, args: &[&str]) -> Out {
        let out = self.command().args(args).output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Run and require exit 0.
    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(
            o.code, 0,
            "eos-sec {args:?}\nstdout:\n{}\nstderr:\n{}",
            o.stdout, o.stderr
        );
        o
    }

    /// Run with `--json` and parse stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let o = self.ok(&all);
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
    }

    /// Run `openssl args...` in the state's directory and require success
    /// (the certificate oracle).
    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("openssl is required");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The example usage log as events of CloudWatch Logs group `group` on
/// moto (stream `api-1`), one event per line, a minute old. Returns the
/// number of events.
pub fn put_example_usage_log(moto: &eos_aws::moto::MotoServer, group: &str) -> usize {
    let example = std::fs::read_to_string(examples().join("usage.jsonl")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let events: Vec<(i64, String)> = example
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (now - 60_000, l.to_owned()))
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(eos_aws::cloudwatch::put_events(
            &moto.aws_options(),
            group,
            "api-1",
            &events,
        ))
        .unwrap();
    events.len()
}

/// A test pepper (hex) for `EOS_SEC_PEPPER`.
pub const PEPPER: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";

/// One HTTP/1.1 request to 127.0.0.1:`port` on a fresh connection; the
/// whole answer.
pub fn http(port: u16, request: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    s.write_all(request.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `eos-sec serve` on `port` answers `/healthz` with 200; panic
/// after 30 s.
pub fn wait_until_serving(port: u16) {
    let start = std::time::Instant::now();
    while !http(
        port,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "serve did not come up on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `eos-sec serve` as a process on a free loopback port, answering. Killed
/// if a test ends without [`Serving::stop`].
pub struct Serving {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl Serving {
    /// Start `serve --listen 127.0.0.1:PORT` from `cmd` (the binary with
    /// its environment) and wait until it answers `/healthz`.
    pub fn start(cmd: Command) -> Serving {
        let serving = Serving::spawn(cmd);
        wait_until_serving(serving.port);
        serving
    }

    /// Start `serve` over TLS (`[serve] tls_cert`/`tls_key` in `cmd`'s
    /// config) and wait until its port accepts connections.
    pub fn start_tls(cmd: Command) -> Serving {
        let serving = Serving::spawn(cmd);
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", serving.port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "serve did not come up on port {}",
                serving.port
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        serving
    }

    fn spawn(mut cmd: Command) -> Serving {
        use std::process::Stdio;
        let port = free_port();
        let child = cmd
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Serving {
            port,
            child: Some(child),
        }
    }

    /// POST `body` as JSON to `path`; the whole answer.
    pub fn post_json(&self, path: &str, body: &str) -> String {
        http(
            self.port,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .unwrap()
    }

    /// SIGTERM, then wait: how the service exited and everything it logged.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        let mut logs = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut logs)
            .unwrap();
        (status, logs)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A rules file (CSV) of 10,001 /32s of `space` that do not aggregate (every
/// other address of 10.0.0.0/8): more than an IPSet holds, so planning
/// refuses the space's v4 set (`too-many-entries`).
pub fn too_many_rules_csv(space: &str) -> String {
    let mut csv = String::from("space,cidr,label,declared_by,created\n");
    for i in 0..10_001u32 {
        let j = 2 * i;
        csv.push_str(&format!(
            "{space},10.{}.{}.{},desk {i},alice,2026-11-01T00:00:00Z\n",
            j >> 16,
            (j >> 8) & 255,
            j & 255
        ));
    }
    csv
}

/// Python for [`boto3_waf`] scripts, after the harness's prelude
/// (`eos_aws::moto::MotoServer::boto3`): `waf`, a WAFv2 client on moto;
/// `ipset(name)`, a REGIONAL IPSet's `(id, lock_token, sorted addresses)`;
/// `put(name, addresses)`, replacing its addresses with the lock token of a
/// fresh read.
const WAF_PRELUDE: &str = r#"
import os, time
waf = boto3.client('wafv2', **kw)
def ipset(name):
    for s in waf.list_ip_sets(Scope='REGIONAL', Limit=100)['IPSets']:
        if s['Name'] == name:
            r = waf.get_ip_set(Name=name, Scope='REGIONAL', Id=s['Id'])
            return s['Id'], r['LockToken'], sorted(r['IPSet']['Addresses'])
    sys.exit('no IPSet ' + name)
def put(name, addresses):
    i, lock, _ = ipset(name)
    waf.update_ip_set(Name=name, Scope='REGIONAL', Id=i, Addresses=addresses, LockToken=lock)
"#;

/// Run a WAFv2 `script` (see [`WAF_PRELUDE`]) with boto3 against `moto`, a
/// peer that reads and writes AWS state without eos-sec; its stdout.
pub fn boto3_waf(moto: &eos_aws::moto::MotoServer, script: &str) -> String {
    moto.boto3(&format!("{WAF_PRELUDE}{script}"))
        .expect("python3 with boto3 (moto_server runs on it)")
}

/// [`boto3_waf`]'s command, not started (a writer running beside eos-sec).
pub fn boto3_waf_command(moto: &eos_aws::moto::MotoServer, script: &str) -> Command {
    moto.boto3_command(&format!("{WAF_PRELUDE}{script}"))
}

/// The entries of IPSet `name` as boto3 reads them (sorted).
pub fn boto3_entries(moto: &eos_aws::moto::MotoServer, name: &str) -> Vec<String> {
    let out = boto3_waf(moto, &format!("print(json.dumps(ipset({name:?})[2]))"));
    serde_json::from_str(out.trim()).unwrap()
}

/// A self-signed server leaf (P-256, `basicConstraints CA:FALSE`, one day)
/// written to `dir/server.key` and `dir/server.pem`: rustls refuses a CA
/// certificate as a server's, so the TLS tests need a leaf.
#[allow(dead_code)] // not every test binary runs a TLS server
pub fn server_leaf(dir: &std::path::Path, subject: &str, san: &str) {
    let out = Command::new("openssl")
        .args([
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
            subject,
            "-addext",
            &format!("subjectAltName={san}"),
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl is required");
    assert!(
        out.status.success(),
        "openssl req -x509 for {subject}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
