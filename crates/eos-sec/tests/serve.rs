#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `eos-sec serve` run as a process: a code issued by the CLI registers the
//! caller's address over HTTP, and SIGTERM stops the service cleanly.

use std::process::Command;

mod common;

use common::{PEPPER, Serving};

fn eos_sec(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eos-sec"));
    c.current_dir(dir)
        .env("EOS_SEC_STATE_DIR", dir.join("state"))
        .env("EOS_SEC_PEPPER", PEPPER)
        .env_remove("EOS_SEC_CONFIG");
    c
}

#[test]
fn serve_registers_an_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let issued = eos_sec(dir.path())
        .args([
            "code",
            "issue",
            "--space",
            "acme",
            "--user",
            "alice",
            "--purpose",
            "register-ip",
        ])
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let code = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let serving = Serving::start(eos_sec(dir.path()));
    let answer = serving.post_json("/v1/ip", &format!("{{\"code\":\"{code}\"}}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""cidr":"127.0.0.1/32""#), "{answer}");
    let (status, logs) = serving.stop();
    assert!(status.success(), "exit {status}: {logs}");
    assert!(!logs.contains(&code), "the code reached the logs");
}

/// kill -9 of `serve` in the middle of a burst of registrations: every
/// registration it answered 200 is in the store afterwards. On SQLite the
/// requests that queue behind a commit share the next one (group commit),
/// and each answer is sent only after that commit returned (`synchronous =
/// FULL`): an answer never runs ahead of its durable commit.
#[test]
fn every_registration_answered_before_kill_9_is_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eos-sec.toml");
    std::fs::write(
        &config,
        "[serve]\nper_source_per_minute = 60000\nper_source_burst = 1000\n",
    )
    .unwrap();
    let cmd = || {
        let mut c = eos_sec(dir.path());
        c.env("EOS_SEC_CONFIG", &config);
        c
    };
    let codes: Vec<String> = (0..40)
        .map(|i| issue_ip_code_for(cmd(), &format!("u{i}")))
        .collect();
    let serving = Serving::start(cmd());
    let port = serving.port;
    let (answered, first) = std::sync::mpsc::channel();
    let barrier = std::sync::Barrier::new(codes.len());
    let answers: Vec<std::io::Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = codes
            .iter()
            .map(|code| {
                let (barrier, answered) = (&barrier, answered.clone());
                s.spawn(move || {
                    let body = format!("{{\"code\":\"{code}\"}}");
                    barrier.wait();
                    let answer = common::http(
                        port,
                        &format!(
                            "POST /v1/ip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                    );
                    let _ = answered.send(());
                    answer
                })
            })
            .collect();
        // The first answer is in: kill -9 while the rest are in flight.
        first.recv().unwrap();
        drop(serving);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<&String> = answers
        .iter()
        .flatten()
        .filter(|a| status_of(a) == "200")
        .collect();
    assert!(!ok.is_empty(), "{answers:#?}");
    let store = eos_store::Store::open(&dir.path().join("state")).unwrap();
    let registered: Vec<String> = eos_store::registrations::list(store.conn(), None)
        .unwrap()
        .into_iter()
        .map(|r| r.user)
        .collect();
    for answer in &ok {
        let user = answer
            .split(r#""user":""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(
            registered.iter().any(|r| r == user),
            "{user} was answered 200 but is not in the store: {registered:?}"
        );
    }
}

/// `-q`/`-v` set the log level: `serve` logs at info by default (its
/// warnings about what it cannot serve among them); `-q` logs nothing, while
/// the failure itself is still reported; `-v` logs more, never less.
#[test]
fn quiet_and_verbose_move_the_log_level() {
    let dir = tempfile::tempdir().unwrap();
    // A port that is taken: serve logs its start-up lines, then fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let run = |flags: &[&str]| {
        let out = eos_sec(dir.path())
            .env_remove("EOS_SEC_LOG")
            .args(flags)
            .args(["serve", "--listen", &listen])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap()
    };
    let default = run(&[]);
    assert!(default.contains(r#""level":"WARN""#), "{default}");
    let quiet = run(&["-q"]);
    assert_eq!(
        quiet,
        format!("error: cannot listen on {listen}: Address already in use (os error 98)\n")
    );
    assert_eq!(run(&["--quiet"]), quiet);
    assert_eq!(
        run(&["-vv"]).matches(r#""level":"WARN""#).count(),
        default.matches(r#""level":"WARN""#).count()
    );
    // EOS_SEC_LOG decides when set.
    let out = eos_sec(dir.path())
        .env("EOS_SEC_LOG", "warn")
        .args(["-q", "serve", "--listen", &listen])
        .output()
        .unwrap();
    let logged = String::from_utf8(out.stderr).unwrap();
    assert!(logged.contains(r#""level":"WARN""#), "{logged}");
}

/// `eos-sec` on the PostgreSQL store at `url` (no state directory needed).
fn eos_sec_pg(dir: &std::path::Path, url: &str) -> Command {
    let mut c = eos_sec(dir);
    c.env("EOS_SEC_STORE_URL", url);
    c
}

fn issue_ip_code(cmd: Command) -> String {
    issue_ip_code_for(cmd, "alice")
}

/// A `register-ip` code of `user` in space acme, issued by the CLI.
fn issue_ip_code_for(mut cmd: Command, user: &str) -> String {
    let issued = cmd
        .args(["code", "issue", "--space", "acme", "--user", user])
        .args(["--purpose", "register-ip"])
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    String::from_utf8(issued.stdout).unwrap().trim().to_owned()
}

fn status_of(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

/// Two `serve` processes on one PostgreSQL database: 50 requests at once
/// for one single-use code, spread over both, and exactly one registers —
/// the database, not a process, decides who spends the use.
#[test]
fn two_serve_instances_on_one_postgresql_spend_a_single_use_code_once() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("eos");
    let dir = tempfile::tempdir().unwrap();
    let code = issue_ip_code(eos_sec_pg(dir.path(), &url));
    let a = Serving::start(eos_sec_pg(dir.path(), &url));
    let b = Serving::start(eos_sec_pg(dir.path(), &url));
    let body = format!("{{\"code\":\"{code}\"}}");
    let barrier = std::sync::Barrier::new(50);
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (serving, body, barrier) = (if i % 2 == 0 { &a } else { &b }, &body, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    serving.post_json("/v1/ip", body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<&String> = answers.iter().filter(|a| status_of(a) == "200").collect();
    assert_eq!(ok.len(), 1, "{answers:#?}");
    assert!(ok[0].contains(r#""cidr":"127.0.0.1/32""#), "{}", ok[0]);
    for answer in &answers {
        assert!(
            matches!(status_of(answer), "200" | "403" | "429"),
            "only refusals besides the one success: {answer}"
        );
    }
    // One use, one rule, one registration — whichever instance won.
    let store =
        eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    let count =
        |sql: &str| eos_store::Sql::query_one(store.conn(), sql, &[], |r| r.get::<i64>(0)).unwrap();
    assert_eq!(
        count("SELECT COALESCE(SUM(uses), 0)::bigint FROM code_uses"),
        1
    );
    assert_eq!(count("SELECT count(*) FROM rules"), 1);
    assert_eq!(count("SELECT count(*) FROM registrations"), 1);
    assert_eq!(count("SELECT count(*) FROM outbox"), 1);
    for s in [a, b] {
        let (status, logs) = s.stop();
        assert!(status.success(), "exit {status}: {logs}");
        assert!(!logs.contains(&code), "the code reached the logs");
    }
}

/// The database goes away under a running `serve`: `/readyz` says so, a
/// registration fails with 503 `store-unavailable` and spends nothing; when
/// the database is back, the same service (no restart) is ready again and
/// the same code registers.
#[test]
fn serve_on_postgresql_fails_cleanly_while_the_database_is_down_and_recovers() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("eos");
    let dir = tempfile::tempdir().unwrap();
    let code = issue_ip_code(eos_sec_pg(dir.path(), &url));
    let serving = Serving::start(eos_sec_pg(dir.path(), &url));
    let get = |path: &str| {
        common::http(
            serving.port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .unwrap()
    };
    assert_eq!(status_of(&get("/readyz")), "200");
    cluster.stop();
    let down = get("/readyz");
    assert_eq!(status_of(&down), "503", "{down}");
    let body = format!("{{\"code\":\"{code}\"}}");
    for _ in 0..2 {
        let answer = serving.post_json("/v1/ip", &body);
        assert_eq!(status_of(&answer), "503", "{answer}");
        assert!(answer.contains("store-unavailable"), "{answer}");
    }
    cluster.start_server();
    let up = get("/readyz");
    assert_eq!(status_of(&up), "200", "{up}");
    let answer = serving.post_json("/v1/ip", &body);
    assert_eq!(
        status_of(&answer),
        "200",
        "the code was not spent: {answer}"
    );
    let (status, logs) = serving.stop();
    assert!(status.success(), "exit {status}: {logs}");
}

/// A store URL's password is never printed, and a URL that is not one is
/// bad input (exit 2).
#[test]
fn a_store_url_password_never_reaches_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = eos_sec_pg(dir.path(), "postgres://eos:s3cr3t-pw@127.0.0.1:1/eos")
        .args(["code", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("postgres://eos@127.0.0.1:1/eos"),
        "{stderr}"
    );
    let bad = eos_sec_pg(
        dir.path(),
        "postgres://eos:s3cr3t-pw@127.0.0.1:notaport/eos",
    )
    .args(["code", "list"])
    .output()
    .unwrap();
    let bad_err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{bad_err}");
    assert!(bad_err.contains("EOS_SEC_STORE_URL"), "{bad_err}");
    for out in [&unreachable, &bad] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("s3cr3t-pw"), "{all}");
    }
}

/// Run `eos-sec` and expect success; its stdout.
fn ok(mut cmd: Command, args: &[&str]) -> String {
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "eos-sec {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `store migrate --to` copies a SQLite state directory (codes, a
/// registration with its rule and outbox row, a CA with its CRL, the audit
/// log) into an empty PostgreSQL database, verified table by table; the
/// copy serves at once (a code issued on SQLite registers through `serve`
/// on PostgreSQL); a second migrate into the now non-empty database is
/// refused with exit 2 and writes nothing.
#[test]
fn store_migrate_copies_a_sqlite_state_directory_into_an_empty_postgresql_database() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("eos");
    let dir = tempfile::tempdir().unwrap();
    let spent = issue_ip_code(eos_sec(dir.path()));
    let serving = Serving::start(eos_sec(dir.path()));
    let answer = serving.post_json("/v1/ip", &format!("{{\"code\":\"{spent}\"}}"));
    assert_eq!(status_of(&answer), "200", "{answer}");
    let (status, logs) = serving.stop();
    assert!(status.success(), "exit {status}: {logs}");
    let unspent = issue_ip_code(eos_sec(dir.path()));
    ok(eos_sec(dir.path()), &["ca", "init", "--env", "dev"]);
    ok(eos_sec(dir.path()), &["ca", "crl", "--out", "crl.pem"]);

    let sqlite = eos_store::Store::open(&dir.path().join("state")).unwrap();
    let count_in = |store: &eos_store::Store, table: &str| {
        eos_store::Sql::query_one(
            store.conn(),
            &format!("SELECT COUNT(*) FROM {table}"),
            &[],
            |r| r.get::<i64>(0),
        )
        .unwrap()
    };
    let audit_before = sqlite.audit_log(usize::MAX).unwrap();

    let report: serde_json::Value = serde_json::from_str(&ok(
        eos_sec(dir.path()),
        &["--json", "store", "migrate", "--to", &url],
    ))
    .unwrap();
    let tables = report["tables"].as_array().unwrap();
    for t in tables {
        assert_eq!(t["source"], t["target"], "{t}");
        let name = t["table"].as_str().unwrap();
        assert_eq!(
            t["source"].as_i64().unwrap(),
            count_in(&sqlite, name),
            "{name}"
        );
    }
    let rows = |name: &str| {
        tables
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("{name} not copied: {report}"))["target"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(rows("codes"), 2);
    assert_eq!(rows("rules"), 1);
    assert_eq!(rows("registrations"), 1);
    assert!(rows("crls") >= 1, "{report}");
    assert_eq!(
        report["audit_entries"].as_u64().unwrap(),
        audit_before.len() as u64
    );

    // The copy, read back from PostgreSQL: the same audit log, entry by entry.
    let pg = eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    assert_eq!(pg.audit_log(usize::MAX).unwrap(), audit_before);
    for t in tables {
        let name = t["table"].as_str().unwrap();
        assert_eq!(count_in(&pg, name), count_in(&sqlite, name), "{name}");
    }
    // It serves: the unspent code registers, the spent one stays spent.
    let serving = Serving::start(eos_sec_pg(dir.path(), &url));
    let spent_again = serving.post_json("/v1/ip", &format!("{{\"code\":\"{spent}\"}}"));
    assert_ne!(status_of(&spent_again), "200", "{spent_again}");
    let fresh = serving.post_json("/v1/ip", &format!("{{\"code\":\"{unspent}\"}}"));
    assert_eq!(status_of(&fresh), "200", "{fresh}");
    let (status, logs) = serving.stop();
    assert!(status.success(), "exit {status}: {logs}");

    // Not empty any more: refused, exit 2, nothing written.
    let audit_on_pg = pg.audit_log(usize::MAX).unwrap();
    let again = eos_sec(dir.path())
        .args(["store", "migrate", "--to", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not empty (table "), "{stderr}");
    assert_eq!(pg.audit_log(usize::MAX).unwrap(), audit_on_pg);
    assert_eq!(count_in(&pg, "codes"), 2);
}

/// `store migrate` verifies the copy before it commits: a target that does
/// not keep what was copied (a trigger of the target's own that drops the
/// codes' rows, then one that rewrites an audit entry) fails the migrate
/// with exit 1 naming the difference, and rolls it back — no row anywhere
/// on the target, so the same migrate succeeds once the target is sound.
#[test]
fn store_migrate_rolls_the_target_back_when_the_copy_does_not_verify() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("eos");
    let dir = tempfile::tempdir().unwrap();
    issue_ip_code(eos_sec(dir.path()));
    ok(eos_sec(dir.path()), &["ca", "init", "--env", "dev"]);
    let pg = eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    let sql = |s: &str| {
        eos_store::Sql::execute(pg.conn(), s, &[]).unwrap();
    };
    let count_in = |table: &str| {
        eos_store::Sql::query_one(
            pg.conn(),
            &format!("SELECT COUNT(*) FROM {table}"),
            &[],
            |r| r.get::<i64>(0),
        )
        .unwrap()
    };
    sql(
        "CREATE FUNCTION test_drop_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    );
    sql(
        "CREATE FUNCTION test_rewrite_detail() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.detail := '{}'; RETURN NEW; END $$",
    );
    for (trigger, table, found) in [
        (
            "test_drop_row",
            "codes",
            "copy verification failed: rows of codes",
        ),
        (
            "test_rewrite_detail",
            "audit_log",
            "copy verification failed: audit log",
        ),
    ] {
        sql(&format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {trigger}()"
        ));
        let out = eos_sec(dir.path())
            .args(["store", "migrate", "--to", &url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{trigger}: {stderr}");
        assert!(stderr.contains(found), "{trigger}: {stderr}");
        for t in ["codes", "audit_log", "kv", "certs", "crls"] {
            assert_eq!(count_in(t), 0, "{trigger}: {t} half-written");
        }
        sql(&format!("DROP TRIGGER {trigger} ON {table}"));
    }
    // Nothing was left behind: the target is still empty, so the same
    // migrate now copies everything.
    let report: serde_json::Value = serde_json::from_str(&ok(
        eos_sec(dir.path()),
        &["--json", "store", "migrate", "--to", &url],
    ))
    .unwrap();
    assert_eq!(count_in("codes"), 1, "{report}");
    assert!(count_in("audit_log") >= 2, "{report}");
}
