//! A moto server (`moto_server`, Python package moto) on 127.0.0.1 for
//! tests. Each [`MotoServer`] is its own process on a free port, killed on
//! drop, so tests never share AWS state.
//!
//! When `moto_server` is missing the test is skipped with a loud message,
//! unless `EOS_SEC_REQUIRE_ORACLES` or `CI` is set: then it fails, so a
//! missing install step in `.ci/run` can never pass silently.
#![allow(clippy::print_stderr, clippy::expect_used, clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::AwsOptions;

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

/// True when a missing oracle must fail the test instead of skipping it.
pub fn oracles_required() -> bool {
    std::env::var_os("EOS_SEC_REQUIRE_ORACLES").is_some_and(|v| !v.is_empty() && v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Record that a test used the outside oracle `name` (`ran`) or skipped
/// for want of it, for `cargo xtask ci`'s oracle report: one line `NAME
/// ran|skipped` appended to the file `EOS_SEC_ORACLE_LOG` names (nothing
/// when it is unset); the protocol of `eos_store::testing::record_oracle`,
/// which this crate cannot depend on.
pub fn record_oracle(name: &str, ran: bool) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("EOS_SEC_ORACLE_LOG") else {
        return;
    };
    let line = format!("{name} {}\n", if ran { "ran" } else { "skipped" });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

impl MotoServer {
    /// Start a server, or `None` (after a loud message) when moto is not
    /// installed and oracles are not required.
    pub fn start() -> Option<MotoServer> {
        let port = free_port();
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                record_oracle("moto", false);
                if oracles_required() {
                    panic!(
                        "moto_server is required (EOS_SEC_REQUIRE_ORACLES/CI set) but could not start: {e}"
                    );
                }
                eprintln!(
                    "\n*** SKIPPING: moto_server not available ({e}); install with `pip install 'moto[server]'` ***\n"
                );
                return None;
            }
        };
        let server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                record_oracle("moto", true);
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not listen on 127.0.0.1:{port} within 30 s");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Options pointing the SDK at this server with dummy static
    /// credentials (moto accepts any).
    pub fn aws_options(&self) -> AwsOptions {
        AwsOptions {
            region: Some("us-east-1".to_owned()),
            profile: None,
            endpoint_url: Some(self.endpoint()),
            static_credentials: Some(("testing".to_owned(), "testing".to_owned())),
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// Environment for child processes (e.g. the `eos-sec` binary under
    /// test) that should talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

impl MotoServer {
    /// Run a Python script with boto3 against this server (an independent
    /// client to read back what eos-sec wrote); its stdout. `kw` holds the
    /// client arguments: `boto3.client('s3', **kw)`. `None` (after a loud
    /// message) when python3 is missing and oracles are not required; a
    /// failing script panics with its stderr.
    pub fn boto3(&self, script: &str) -> Option<String> {
        match self.boto3_command(script).output() {
            Ok(o) if o.status.success() => {
                record_oracle("boto3", true);
                Some(String::from_utf8_lossy(&o.stdout).into_owned())
            }
            Ok(o) => panic!(
                "boto3 script failed: {}\n{script}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) if !oracles_required() => {
                record_oracle("boto3", false);
                eprintln!("\n*** SKIPPING: python3 not available ({e}) ***\n");
                None
            }
            Err(e) => {
                panic!("python3 with boto3 is required (EOS_SEC_REQUIRE_ORACLES/CI set): {e}")
            }
        }
    }
}

impl MotoServer {
    /// The command [`MotoServer::boto3`] runs, not started: for a peer that
    /// runs beside the code under test (e.g. another writer racing it).
    pub fn boto3_command(&self, script: &str) -> Command {
        let prelude = format!(
            "import boto3, sys, json\n\
             kw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n",
            self.endpoint()
        );
        let mut c = Command::new("python3");
        c.args(["-c", &format!("{prelude}{script}")])
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }
}

/// Run a future to completion on a fresh current-thread runtime (tests
/// that set up AWS state from synchronous code).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}
