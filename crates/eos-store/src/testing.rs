//! A throwaway PostgreSQL cluster for tests (feature `test-support`): the
//! Debian server's `initdb` into a temporary directory, listening only on a
//! Unix socket in that directory, stopped and removed on drop. No mocks: the
//! store's PostgreSQL tests run against the real server.
//!
//! `initdb` refuses to run as root; as root the cluster's directory is given
//! to the `postgres` system user and the server runs as that user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The database user the tests connect as (trust authentication, socket only).
pub const USER: &str = "eos";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<&'static str>,
    /// On disk with fsync on (benchmarks), or in memory without (tests).
    durable: bool,
}

/// Whether a missing oracle must fail the test instead of skipping it
/// (`EOS_SEC_REQUIRE_ORACLES` or `CI` set).
pub fn oracles_required() -> bool {
    let set =
        |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty() && x != "0" && x != "false");
    set("EOS_SEC_REQUIRE_ORACLES") || set("CI")
}

fn required() -> bool {
    oracles_required()
}

/// Record that a test used the outside oracle `name` (`ran`) or skipped
/// for want of it, for `cargo xtask ci`'s oracle report: one line `NAME
/// ran|skipped` appended to the file `EOS_SEC_ORACLE_LOG` names (nothing
/// when it is unset). The same protocol is written by
/// `eos_aws::moto::record_oracle` (which cannot depend on this crate).
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

/// Run `test` on an empty store of each engine: SQLite (in memory) and,
/// when a PostgreSQL server is installed (required under
/// `EOS_SEC_REQUIRE_ORACLES` or `CI`), a fresh database on a throwaway
/// cluster of this test's own. The same test, parameterised by the engine
/// (`Store::engine` says which one it runs on).
pub fn on_each_engine(test: impl Fn(crate::Store)) {
    test(crate::Store::open_in_memory().expect("in-memory store"));
    if let Some(cluster) = PgCluster::start() {
        let url = crate::StoreUrl::parse(&cluster.create_database("store_test")).unwrap();
        test(crate::Store::open_postgres(&url).expect("postgresql store"));
    }
}

/// Run `test` on where an empty store of each engine lives, for tests
/// that open it more than once (several connections, as several processes
/// or instances would): a temporary state directory, and a fresh database
/// on a throwaway PostgreSQL cluster (as [`on_each_engine`]).
pub fn on_each_location(test: impl Fn(&crate::StoreLocation)) {
    on_each_fresh(|fresh| test(&fresh.location()));
}

/// Run `test` once per engine with a maker of empty stores of that engine,
/// for tests that need several separate stores.
pub fn on_each_fresh(test: impl Fn(&FreshStores)) {
    test(&FreshStores::Sqlite(tempfile::tempdir().expect("temp dir")));
    if let Some(cluster) = PgCluster::start() {
        test(&FreshStores::Postgres(cluster));
    }
}

/// Empty stores of one engine, as many as a test asks for: a new state
/// directory each (SQLite), or a new database each on one throwaway cluster
/// (PostgreSQL). Removed with `self`.
#[derive(Debug)]
pub enum FreshStores {
    /// State directories under this one.
    Sqlite(tempfile::TempDir),
    /// Databases on this cluster.
    Postgres(PgCluster),
}

impl FreshStores {
    /// Where a new, empty store is.
    pub fn location(&self) -> crate::StoreLocation {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match self {
            FreshStores::Sqlite(dir) => {
                crate::StoreLocation::Dir(dir.path().join(format!("state{n}")))
            }
            FreshStores::Postgres(cluster) => crate::StoreLocation::Postgres(
                crate::StoreUrl::parse(&cluster.create_database(&format!("store_test_{n}")))
                    .unwrap(),
            ),
        }
    }

    /// Which engine.
    pub fn engine(&self) -> crate::Engine {
        match self {
            FreshStores::Sqlite(_) => crate::Engine::Sqlite,
            FreshStores::Postgres(_) => crate::Engine::Postgres,
        }
    }
}

/// The newest installed server's bin directory (`/usr/lib/postgresql/<n>/bin`).
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("EOS_SEC_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

impl PgCluster {
    /// Start a cluster, or `None` (with a note on stderr) when no PostgreSQL
    /// server is installed and the oracles are not required.
    pub fn start() -> Option<PgCluster> {
        Self::start_with(false)
    }

    /// A cluster as durable as SQLite's `synchronous = FULL`: on disk
    /// (the temporary directory), `fsync` and `synchronous_commit` on — for
    /// benchmarks that compare the two engines.
    pub fn start_durable() -> Option<PgCluster> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Option<PgCluster> {
        let Some(bin) = find_bin() else {
            record_oracle("postgresql", false);
            assert!(
                !required(),
                "EOS_SEC_REQUIRE_ORACLES is set and no PostgreSQL server is installed (apt-get install postgresql)"
            );
            eprintln!("skipping: no PostgreSQL server in /usr/lib/postgresql/*/bin");
            return None;
        };
        // In memory when there is a tmpfs (/dev/shm): a test cluster needs
        // no durability, and ~40 MB each stays off the disk.
        let shm = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("eos-pg");
        let dir = if shm.is_dir() && !durable {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .expect("temp dir");
        let root = nix_is_root();
        let run_as = root.then_some("postgres");
        if root {
            chown_to_postgres(dir.path());
        }
        let cluster = PgCluster {
            dir,
            bin,
            run_as,
            durable,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.start_server();
        record_oracle("postgresql", true);
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Start (or restart after [`PgCluster::stop`]) the server and wait until
    /// it accepts connections.
    pub fn start_server(&self) {
        let sock = self.socket_dir().to_str().unwrap().to_owned();
        let fsync = if self.durable { "on" } else { "off" };
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{sock}' -c max_connections=200 -c fsync={fsync}"
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let url = self.url("postgres");
            if crate::db::off_runtime(|| postgres::Client::connect(&url, postgres::NoTls).is_ok()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("postgres did not accept connections within 30 s");
    }

    /// Stop the server now (`-m immediate`: like a crash or a lost host;
    /// committed transactions survive, as they would on a real server).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// A connection URL for database `db` (no password: trust on the socket).
    pub fn url(&self, db: &str) -> String {
        let host = self.socket_dir().display().to_string().replace('/', "%2F");
        format!("postgres://{USER}@{host}/{db}")
    }

    /// Create a fresh, empty database and return its URL (also from
    /// async code).
    pub fn create_database(&self, name: &str) -> String {
        let maintenance = self.url("postgres");
        crate::db::off_runtime(|| {
            let mut c = postgres::Client::connect(&maintenance, postgres::NoTls)
                .expect("connect to the maintenance database");
            c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .expect("create database");
            drop(c);
        });
        self.url(name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data().to_str().unwrap_or(""),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

fn nix_is_root() -> bool {
    // `id -u` rather than libc: the workspace forbids unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_to_postgres(dir: &Path) {
    let out = Command::new("chown")
        .arg("postgres:")
        .arg(dir)
        .output()
        .expect("chown");
    assert!(out.status.success(), "chown postgres {}", dir.display());
}
