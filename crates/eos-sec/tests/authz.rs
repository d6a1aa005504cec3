#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! `eos-sec authz serve` behind a real nginx, end to end: nginx terminates
//! TLS and asks for a client certificate from the CA `eos-sec ca init`
//! made, calls the decision service with `auth_request` (the configuration
//! `eos-sec authz config nginx` prints, included as is), and proxies to a
//! small upstream; curl is the client, with and without certificates, from
//! loopback addresses in and out of the space's set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{State, free_port};

const NGINX: &str = "/usr/sbin/nginx";
/// The reload interval the service runs with, and so the bound on how
/// long a revoked certificate may still pass.
const RELOAD: Duration = Duration::from_secs(1);

/// nginx, curl and openssl are outside oracles: skip loudly when one is
/// missing, unless CI or EOS_SEC_REQUIRE_ORACLES=1 make that a failure.
fn oracles_available() -> bool {
    available(&[
        ("nginx", NGINX, "-v"),
        ("curl", "curl", "--version"),
        ("openssl", "openssl", "version"),
    ])
}

/// Whether each (name, command, version flag) runs; see
/// [`oracles_available`].
fn available(oracles: &[(&str, &str, &str)]) -> bool {
    let missing: Vec<&str> = oracles
        .iter()
        .filter(|(name, cmd, arg)| {
            let ran = Command::new(cmd)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success());
            eos_store::testing::record_oracle(name, ran);
            !ran
        })
        .map(|(n, _, _)| *n)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var_os("CI").is_some()
        || std::env::var("EOS_SEC_REQUIRE_ORACLES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{missing:?} required (CI / EOS_SEC_REQUIRE_ORACLES) but missing"
    );
    eprintln!("SKIPPED: {missing:?} not installed; this test needs them as oracles");
    false
}

/// A child process stopped when the test ends: SIGTERM first, so that a
/// master process (nginx, caddy) takes its workers down with it, then
/// SIGKILL if it has not exited within 5 s.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A state directory (empty config) with the CA, certificates and files.
struct Env {
    st: State,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.st.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn eos(&self, args: &[&str]) -> String {
        self.st.ok(args).stdout
    }

    /// Declare a rule for space acme and apply it to the state store.
    fn allow_acme(&self, cidr: &str, label: &str) {
        self.eos(&[
            "rules",
            "add",
            "--space",
            "acme",
            "--cidr",
            cidr,
            "--label",
            label,
            "--declared-by",
            "admin@acme.example",
        ]);
        self.eos(&["apply", "--yes"]);
    }

    fn openssl(&self, args: &[&str]) -> Output {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.st.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A key and a certificate for `user` in `space`, signed by the CA;
    /// returns the serial.
    fn issue(&self, name: &str, space: &str, user: &str) -> String {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ]);
        self.openssl(&["req", "-new", "-key", &key, "-subj", "/CN=x", "-out", &csr]);
        let signed = self.eos(&[
            "--json",
            "ca",
            "sign",
            "--csr",
            &csr,
            "--space",
            space,
            "--user",
            user,
            "--profile",
            "cli",
            "--out",
            &format!("{name}.pem"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&signed).unwrap();
        v["serial"].as_str().unwrap().to_owned()
    }
}

/// Wait until something accepts connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not come up on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request through nginx: HTTP status and body.
struct Client<'a> {
    env: &'a Env,
    port: u16,
}

impl Client<'_> {
    /// GET https://`space`.eos.test/ from loopback address `from`, with
    /// the certificate `cert` (name of a key/pem pair) and extra headers.
    fn get(&self, space: &str, from: &str, cert: Option<&str>, headers: &[&str]) -> (u16, String) {
        let host = format!("{space}.eos.test");
        let mut args = vec![
            "--silent".to_owned(),
            "--show-error".to_owned(),
            "--max-time".to_owned(),
            "10".to_owned(),
            "--interface".to_owned(),
            from.to_owned(),
            "--cacert".to_owned(),
            self.env.p("server.pem"),
            "--resolve".to_owned(),
            format!("{host}:{}:127.0.0.1", self.port),
            "--write-out".to_owned(),
            "\n%{http_code}".to_owned(),
        ];
        if let Some(c) = cert {
            args.extend([
                "--cert".to_owned(),
                self.env.p(&format!("{c}.pem")),
                "--key".to_owned(),
                self.env.p(&format!("{c}.key")),
            ]);
        }
        for h in headers {
            args.extend(["--header".to_owned(), (*h).to_owned()]);
        }
        args.push(format!("https://{host}:{}/hello", self.port));
        let out = Command::new("curl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_owned())
    }
}

/// A plain HTTP GET straight to the decision service from `from`.
fn direct(port: u16, from: &str, host: &str, headers: &[String]) -> u16 {
    let mut args = vec![
        "--silent".to_owned(),
        "--max-time".to_owned(),
        "10".to_owned(),
        "--interface".to_owned(),
        from.to_owned(),
        "--output".to_owned(),
        "/dev/null".to_owned(),
        "--write-out".to_owned(),
        "%{http_code}".to_owned(),
        "--header".to_owned(),
        format!("Host: {host}"),
    ];
    for h in headers {
        args.extend(["--header".to_owned(), h.clone()]);
    }
    args.push(format!("http://127.0.0.1:{port}/_eos_authz"));
    let out = Command::new("curl").args(&args).output().unwrap();
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

fn metric(port: u16, name: &str) -> u64 {
    let out = Command::new("curl")
        .args(["--silent", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The CA, acme's set (127.0.0.3), the policy, nginx's own certificate,
/// the decision service (only 127.0.0.1, nginx, is a trusted proxy) and
/// nginx with the configuration `authz config nginx` prints, as is.
struct Stack {
    env: Env,
    authz_port: u16,
    nginx_port: u16,
    /// The echoing upstream, served by the same nginx.
    upstream_port: u16,
    _nginx: Proc,
    _authz: Proc,
}

impl Stack {
    fn client(&self) -> Client<'_> {
        Client {
            env: &self.env,
            port: self.nginx_port,
        }
    }
}

fn stack() -> Stack {
    stack_on(Transport::Tcp)
}

/// How nginx reaches the decision service.
#[derive(PartialEq)]
enum Transport {
    /// Loopback TCP; only 127.0.0.1 (nginx) is a trusted proxy.
    Tcp,
    /// A Unix socket in the state directory (`authz.sock`), whose peers
    /// are trusted by its mode; no trusted proxy is configured at all.
    Unix,
}

fn stack_on(transport: Transport) -> Stack {
    // The decision service is configured by `[authz]`; `authz config
    // nginx` wires nginx to its `listen`.
    let authz_port = free_port();
    let st = State::new("");
    let listen = match transport {
        Transport::Tcp => {
            format!("listen = \"127.0.0.1:{authz_port}\"\ntrusted_proxies = [\"127.0.0.1\"]\n")
        }
        Transport::Unix => format!(
            "listen = \"unix:{}\"\n",
            st.path().join("authz.sock").display()
        ),
    };
    std::fs::write(
        st.path().join("eos-sec.toml"),
        format!("[authz]\n{listen}reload_interval = \"1s\"\n"),
    )
    .unwrap();
    let env = Env { st };
    env.eos(&["ca", "init", "--env", "dev"]);
    // acme's set: 127.0.0.3 only.
    env.allow_acme("127.0.0.3", "office");
    write(
        &env.path("policy.toml"),
        r#"
[web_acl]
name = "eos-test"

[routing]
by = "host-label"
domain = "eos.test"

[cert_gate]
ca_bundle = "state/ca/ca.pem"
crl = ["state/ca/crl.pem"]

[spaces.acme]
mode = "either"
stage = "enforce"

[spaces.globex]
mode = "cert"
stage = "enforce"

[spaces.initech]
mode = "cert"
stage = "count"

[spaces.openco]
mode = "open"
stage = "enforce"
"#,
    );
    // nginx's own certificate, for *.eos.test: a leaf (rustls, the
    // drill's client, refuses a CA certificate as a server's).
    common::server_leaf(env.st.path(), "/CN=eos.test", "DNS:*.eos.test");

    let log = std::fs::File::create(env.path("authz.log")).unwrap();
    let authz = Proc(
        env.st
            .command()
            .args(["authz", "serve", "--policy", "policy.toml"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    match transport {
        Transport::Tcp => wait_for_port(authz_port, "eos-sec authz serve"),
        Transport::Unix => {
            let start = Instant::now();
            while std::os::unix::net::UnixStream::connect(env.path("authz.sock")).is_err() {
                assert!(start.elapsed() < Duration::from_secs(30), "no authz.sock");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    let nginx_port = free_port();
    let upstream_port = free_port();
    let generated = env.eos(&[
        "authz",
        "config",
        "nginx",
        "--listen",
        &format!("127.0.0.1:{nginx_port}"),
        "--server-name",
        "*.eos.test",
        "--tls-cert",
        "server.pem",
        "--tls-key",
        "server.key",
        "--client-ca",
        "state/ca/ca.pem",
        "--upstream",
        &format!("http://127.0.0.1:{upstream_port}"),
    ]);
    write(&env.path("eos-authz.conf"), &generated);
    std::fs::create_dir_all(env.path("nginx/logs")).unwrap();
    let d = env.p("nginx");
    write(
        &env.path("nginx/nginx.conf"),
        &format!(
            r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {conf};
    # The upstream: echoes the identity nginx passed on.
    server {{
        listen 127.0.0.1:{upstream_port};
        location / {{
            return 200 "space=$http_x_eos_space user=$http_x_eos_user gate=$http_x_eos_gate forged=$http_x_amzn_mtls_clientcert";
        }}
    }}
}}
"#,
            conf = env.p("eos-authz.conf"),
        ),
    );
    let nginx = Proc(
        Command::new(NGINX)
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
            .unwrap(),
    );
    wait_for_port(nginx_port, "nginx");
    Stack {
        env,
        authz_port,
        nginx_port,
        upstream_port,
        _nginx: nginx,
        _authz: authz,
    }
}

#[test]
fn nginx_auth_request_enforces_either_cert_and_revocation() {
    if !oracles_available() {
        return;
    }
    let stack = stack();
    let env = &stack.env;
    let authz_port = stack.authz_port;
    let _alice = env.issue("alice", "acme", "alice");
    let bob = env.issue("bob", "globex", "bob");
    env.issue("carol", "globex", "carol");
    let c = stack.client();

    assert_either_admits_address_or_certificate(&c);
    // A client cannot claim an address or identity through headers.
    let (code, _) = c.get(
        "acme",
        "127.0.0.4",
        None,
        &[
            "X-Forwarded-For: 127.0.0.3",
            "X-Real-IP: 127.0.0.3",
            "X-Eos-Gate: ip",
        ],
    );
    assert_eq!(code, 403);

    // Mode `cert` (globex).
    let (code, body) = c.get("globex", "127.0.0.4", Some("bob"), &[]);
    assert_eq!(
        (code, body.as_str()),
        (200, "space=globex user=bob gate=cert forged=")
    );
    assert_eq!(
        c.get("globex", "127.0.0.3", Some("alice"), &[]).0,
        403,
        "another space's certificate"
    );
    assert_eq!(
        c.get("globex", "127.0.0.3", None, &[]).0,
        401,
        "no certificate"
    );

    // A forged ALB header: through nginx it is stripped ...
    let bob_pem = std::fs::read_to_string(env.path("bob.pem")).unwrap();
    let escaped: String = percent_escape(&bob_pem);
    let forged = format!("X-Amzn-Mtls-Clientcert: {escaped}");
    assert_eq!(c.get("globex", "127.0.0.4", None, &[&forged]).0, 401);
    let forged_nginx = format!("X-SSL-Client-Cert: {escaped}");
    assert_eq!(c.get("globex", "127.0.0.4", None, &[&forged_nginx]).0, 401);
    // ... and straight from an untrusted peer (127.0.0.2) it is ignored,
    // as is its X-Forwarded-For; from the trusted proxy it would be read.
    let headers = vec![forged.clone(), "X-Forwarded-For: 127.0.0.3".to_owned()];
    assert_eq!(
        direct(authz_port, "127.0.0.2", "globex.eos.test", &headers),
        401
    );
    assert_eq!(
        direct(authz_port, "127.0.0.2", "acme.eos.test", &headers),
        403
    );
    assert_eq!(
        direct(authz_port, "127.0.0.1", "globex.eos.test", &headers),
        200
    );
    assert!(metric(authz_port, "eos_authz_untrusted_headers_ignored_total") >= 2);

    // Envoy's ext_authz (x-forwarded-client-cert) and Traefik/Caddy's
    // forward auth (X-Forwarded-Tls-Client-Cert, base64 DER): read from the
    // trusted proxy, ignored from anyone else, stripped by nginx, and
    // refused when they could carry a forged certificate.
    let xfcc = format!(
        "X-Forwarded-Client-Cert: By=spiffe://eos/authz;Hash=00;Cert=\"{escaped}\";Subject=\"O=globex,CN=bob\""
    );
    let der_b64: String = bob_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let traefik = format!("X-Forwarded-Tls-Client-Cert: {}", percent_escape(&der_b64));
    let caddy = format!("X-Forwarded-Tls-Client-Cert: {der_b64}");
    for forged in [&xfcc, &traefik, &caddy] {
        let one = std::slice::from_ref(forged);
        assert_eq!(
            direct(authz_port, "127.0.0.1", "globex.eos.test", one),
            200,
            "{forged}"
        );
        assert_eq!(
            direct(authz_port, "127.0.0.2", "globex.eos.test", one),
            401,
            "{forged}"
        );
        assert_eq!(
            c.get("globex", "127.0.0.4", None, &[forged]).0,
            401,
            "{forged}"
        );
    }
    let hostile = [
        // A client's element before the proxy's (APPEND_FORWARD).
        format!("X-Forwarded-Client-Cert: Cert=\"{escaped}\",Cert=\"{escaped}\""),
        // Two certificate headers at once.
        format!("X-Forwarded-Client-Cert: Cert=\"{escaped}\"\r\n{traefik}"),
        "X-Forwarded-Client-Cert: Hash=00;Subject=\"O=globex,CN=bob\"".to_owned(),
        "X-Forwarded-Tls-Client-Cert: not base64".to_owned(),
    ];
    for h in &hostile {
        let hs: Vec<String> = h.split("\r\n").map(str::to_owned).collect();
        assert_eq!(
            direct(authz_port, "127.0.0.1", "globex.eos.test", &hs),
            403,
            "{h}"
        );
    }

    // Stage `count` (initech, mode cert): admitted, counted as a refusal.
    let before = metric(authz_port, "eos_authz_would_refuse_total");
    let (code, body) = c.get("initech", "127.0.0.4", None, &[]);
    assert_eq!(
        (code, body.as_str()),
        (200, "space=initech user= gate=count forged=")
    );
    assert_eq!(
        metric(authz_port, "eos_authz_would_refuse_total"),
        before + 1
    );

    // Revocation: bob is refused within the reload interval, without a
    // restart of nginx or the service; carol (same space) still passes.
    // bob's chain is in the cache of verified chains by now: the reload
    // that reads the new CRL starts an empty one.
    let hits = metric(authz_port, "eos_authz_chain_cache_hits_total");
    assert_eq!(c.get("globex", "127.0.0.4", Some("bob"), &[]).0, 200);
    assert_eq!(
        metric(authz_port, "eos_authz_chain_cache_hits_total"),
        hits + 1,
        "bob's chain was not answered from the cache"
    );
    env.eos(&["ca", "revoke", &bob]);
    let refused_after = within_reload(
        || c.get("globex", "127.0.0.4", Some("bob"), &[]).0,
        200,
        403,
    );
    eprintln!("revoked certificate refused after {refused_after:?} (reload interval {RELOAD:?})");
    assert_eq!(c.get("globex", "127.0.0.4", Some("carol"), &[]).0, 200);

    // The sets are live too: a rule added and applied to the state store
    // admits its address, one removed refuses it, within the interval.
    env.allow_acme("127.0.0.5", "home");
    let added = within_reload(|| c.get("acme", "127.0.0.5", None, &[]).0, 403, 200);
    env.eos(&["rules", "remove", "--space", "acme", "127.0.0.3"]);
    env.eos(&["apply", "--yes", "--allow-large-change"]);
    let removed = within_reload(|| c.get("acme", "127.0.0.3", None, &[]).0, 200, 403);
    eprintln!("set change enforced after {added:?} (added), {removed:?} (removed)");

    // The decision log: JSON lines naming rule and identity, never the
    // certificate itself.
    let log = std::fs::read_to_string(env.path("authz.log")).unwrap();
    let bob_body = bob_pem.lines().nth(1).unwrap();
    assert!(!log.contains(bob_body) && !log.contains("BEGIN CERTIFICATE"));
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "decision")
        .collect();
    assert!(decisions.iter().any(|d| {
        d["fields"]["user"] == "alice"
            && d["fields"]["gate"] == "cert"
            && d["fields"]["space"] == "acme"
            && d["fields"]["cert"] == "valid"
            && d["fields"]["cert_uri"]
                .as_str()
                .is_some_and(|u| u.contains("alice"))
            && (d["fields"]["chain"] == "hit" || d["fields"]["chain"] == "verified")
    }));
    // A refused certificate says why, as a plain string.
    assert!(decisions.iter().any(|d| {
        d["fields"]["cert"] == "invalid"
            && d["fields"]["cert_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty() && !r.contains('{'))
    }));
    assert!(
        decisions
            .iter()
            .any(|d| d["fields"]["rule"] == "either" && d["fields"]["status"] == 403)
    );
}

/// Mode `either` (acme, set 127.0.0.3): the address in the set without a
/// certificate, or the space's certificate from outside it; neither, or
/// another space's certificate (bob's, globex), is refused.
fn assert_either_admits_address_or_certificate(c: &Client<'_>) {
    let (code, body) = c.get("acme", "127.0.0.3", None, &[]);
    assert_eq!(
        (code, body.as_str()),
        (200, "space=acme user= gate=ip forged=")
    );
    let (code, body) = c.get("acme", "127.0.0.4", Some("alice"), &[]);
    assert_eq!(
        (code, body.as_str()),
        (200, "space=acme user=alice gate=cert forged=")
    );
    assert_eq!(c.get("acme", "127.0.0.4", None, &[]).0, 403);
    assert_eq!(c.get("acme", "127.0.0.4", Some("bob"), &[]).0, 403);
}

/// Poll `status` while it answers `before` until it answers `after`,
/// which must happen within three reload intervals; how long it took.
fn within_reload(status: impl Fn() -> u16, before: u16, after: u16) -> Duration {
    let start = Instant::now();
    loop {
        let code = status();
        if code == after {
            return start.elapsed();
        }
        assert_eq!(code, before);
        assert!(
            start.elapsed() < RELOAD * 3,
            "still {before} after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// URL-encode like nginx's `$ssl_client_escaped_cert`.
fn percent_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `eos-sec drill revocation` with `args` after the target's options;
/// (exit code, JSON report or Null, stderr).
fn drill(env: &Env, target: &str, connect: u16, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec![
        "--json".to_owned(),
        "drill".to_owned(),
        "revocation".to_owned(),
        "--target".to_owned(),
        target.to_owned(),
        "--connect".to_owned(),
        format!("127.0.0.1:{connect}"),
        "--interval".to_owned(),
        "50ms".to_owned(),
    ];
    if !args.contains(&"--ca-file") {
        all.extend(["--ca-file".to_owned(), "server.pem".to_owned()]);
    }
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = env.st.run(&all);
    let report = serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.code, report, out.stderr)
}

fn cert_status(env: &Env, serial: &str) -> String {
    let v = env.st.json(&["ca", "show", serial]);
    v["status"].as_str().unwrap().to_owned()
}

/// A drill started against a target that accepts connections and never
/// answers, once it has issued its certificate: the child and its serial.
fn drill_hanging(env: &Env, port: u16) -> (Child, String) {
    use std::io::BufRead;
    let mut child = env
        .st
        .command()
        .args([
            "--json",
            "drill",
            "revocation",
            "--target",
            "https://globex.eos.test/hello",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--ca-file",
            "server.pem",
            "--space",
            "globex",
            "--sla",
            "1s",
            "--lifetime",
            "2m",
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let serial = loop {
        let line = lines.next().expect("drill ended before issuing").unwrap();
        if let Some(rest) = line.strip_prefix("drill: issued ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the drill never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    (child, serial)
}

/// The pids of `pid`'s children (Linux `/proc/PID/task/PID/children`).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Ending a test stops nginx with its workers: a SIGKILL of the master
/// alone left its workers running (orphaned, still holding the listening
/// sockets and every file descriptor the test had) after each test run.
#[test]
fn a_stopped_nginx_leaves_no_worker_behind() {
    if !oracles_available() {
        return;
    }
    let s = stack();
    let workers = children(s._nginx.0.id());
    assert!(!workers.is_empty(), "nginx started no worker");
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = loop {
        let alive: Vec<u32> = workers
            .iter()
            .copied()
            .filter(|w| Path::new(&format!("/proc/{w}")).exists())
            .collect();
        if alive.is_empty() || Instant::now() > deadline {
            break alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        alive.is_empty(),
        "nginx workers {alive:?} outlived the test"
    );
}

#[test]
fn drill_revocation_measures_time_to_refuse_through_nginx() {
    if !oracles_available() {
        return;
    }
    let stack = stack();
    let env = &stack.env;
    let port = stack.nginx_port;
    let globex = format!("https://globex.eos.test:{port}/hello");

    // A target that accepts and never answers: the drill hangs in its
    // admission probe, with its certificate issued.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hang.incoming() {
            held.push(c);
        }
    });

    // kill -9 half way: the certificate stays active, but only for its
    // lifetime (2 minutes, backdated 5), its key died with the process,
    // and it is marked as a drill's ...
    let (mut child, killed) = drill_hanging(env, hang_port);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(cert_status(env, &killed), "active");
    let rec = env.st.json(&["ca", "show", &killed]);
    let ts = |k: &str| {
        time::OffsetDateTime::parse(
            rec[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(ts("not_after") - time::OffsetDateTime::now_utc() <= time::Duration::minutes(2));
    assert_eq!(rec["user"], "eos-drill");

    // ... so SIGTERM half way revokes at once, and the next drill (this
    // one) first revokes what the killed one left.
    let (child, interrupted) = drill_hanging(env, hang_port);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["revoked"], true);
    assert_eq!(report["leftovers_revoked"], serde_json::json!([killed]));
    assert_eq!(cert_status(env, &killed), "revoked");
    assert_eq!(cert_status(env, &interrupted), "revoked");

    // The drill through nginx: admitted, revoked, refused within the
    // reload interval (plus a probe interval), well inside the SLA.
    let (code, r, stderr) = drill(env, &globex, port, &["--space", "globex", "--sla", "10s"]);
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "passed");
    assert_eq!(
        r["admitted"],
        serde_json::json!({"outcome": "admitted", "status": 200})
    );
    assert_eq!(
        r["refused_by"],
        serde_json::json!({"kind": "http", "status": 403})
    );
    assert_eq!(r["leftovers_revoked"], serde_json::json!([]));
    assert_eq!(r["published"]["to"], "local-crl");
    let ms = r["time_to_refuse_ms"].as_u64().unwrap();
    assert!(ms <= (RELOAD * 3).as_millis() as u64, "{ms} ms");
    eprintln!("drill: time to refuse {ms} ms (reload interval {RELOAD:?})");
    let serial = r["serial"].as_str().unwrap();
    assert_eq!(cert_status(env, serial), "revoked");
    // Marked as a drill in the inventory and the audit log.
    let store = eos_store::Store::open(&env.path("state")).unwrap();
    assert!(eos_store::drills::is_drill(store.conn(), serial).unwrap());
    let actions: Vec<(String, String)> = store
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .filter(|a| a.action.starts_with("drill."))
        .map(|a| (a.action, a.subject))
        .collect();
    for expected in [
        ("drill.issue", serial),
        ("drill.revoke", serial),
        ("drill.revoke-leftover", killed.as_str()),
        ("drill.revocation", "passed"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, s)| a == expected.0 && s == expected.1),
            "{expected:?} not in {actions:?}"
        );
    }
    drop(store);

    // A target that never refuses (an open space): the SLA is missed,
    // exit 3, and the certificate is revoked all the same.
    let openco = format!("https://openco.eos.test:{port}/hello");
    let (code, r, _) = drill(env, &openco, port, &["--space", "openco", "--sla", "1s"]);
    assert_eq!(
        (code, &r["status"]),
        (3, &serde_json::json!("sla-missed")),
        "{r:#}"
    );
    assert_eq!(r["time_to_refuse_ms"], serde_json::Value::Null);
    assert_eq!(cert_status(env, r["serial"].as_str().unwrap()), "revoked");

    // A target that refuses the drill certificate from the start (another
    // space's gate) proves nothing: exit 4.
    let (code, r, _) = drill(env, &globex, port, &["--space", "acme", "--sla", "5s"]);
    assert_eq!(
        (code, &r["status"]),
        (4, &serde_json::json!("not-admitted")),
        "{r:#}"
    );
    assert_eq!(cert_status(env, r["serial"].as_str().unwrap()), "revoked");

    // The target's certificate is verified against --ca-file: the CA's
    // own bundle does not vouch for nginx, so nothing is admitted.
    let args = [
        "--space",
        "globex",
        "--sla",
        "5s",
        "--ca-file",
        "state/ca/ca.pem",
    ];
    let (code, r, _) = drill(env, &globex, port, &args);
    assert_eq!(
        (code, &r["status"]),
        (1, &serde_json::json!("unreachable")),
        "{r:#}"
    );
    assert!(
        r["last_probe_error"]
            .as_str()
            .unwrap()
            .starts_with("tls handshake"),
        "{r:#}"
    );
    assert_eq!(cert_status(env, r["serial"].as_str().unwrap()), "revoked");

    // Bad input writes nothing: exit 2 before any certificate is issued.
    let before = env.st.json(&["ca", "list"]).as_array().unwrap().len();
    for bad in [
        vec!["--space", "globex", "--sla", "5m", "--lifetime", "5m"],
        vec!["--space", "globex", "--sla", "soon"],
        vec!["--space", "globex", "--ca-file", "missing.pem"],
    ] {
        let (code, _, stderr) = drill(env, &globex, port, &bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
    let (code, _, stderr) = drill(env, "http://globex.eos.test/", port, &["--space", "globex"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        env.st.json(&["ca", "list"]).as_array().unwrap().len(),
        before
    );
}

/// Caddy, from Debian, with the Caddyfile `authz config caddy` prints, as
/// is: `forward_auth` to the same decision service, in front of the same
/// upstream.
#[test]
fn caddy_forward_auth_enforces_either_cert_and_revocation() {
    if !oracles_available() || !caddy_available() {
        return;
    }
    let stack = stack();
    let env = &stack.env;
    let _alice = env.issue("alice", "acme", "alice");
    let bob = env.issue("bob", "globex", "bob");
    let caddy_port = free_port();
    let generated = env.eos(&[
        "authz",
        "config",
        "caddy",
        "--listen",
        &format!("127.0.0.1:{caddy_port}"),
        "--server-name",
        "*.eos.test",
        "--tls-cert",
        "server.pem",
        "--tls-key",
        "server.key",
        "--client-ca",
        "state/ca/ca.pem",
        "--upstream",
        &format!("http://127.0.0.1:{}", stack.upstream_port),
    ]);
    write(&env.path("Caddyfile"), &generated);
    // A path that would end the value early is refused, nothing printed.
    let bad = env.st.run(&[
        "authz",
        "config",
        "caddy",
        "--tls-cert",
        "my cert.pem",
        "--tls-key",
        "server.key",
        "--client-ca",
        "state/ca/ca.pem",
        "--upstream",
        "http://127.0.0.1:1",
    ]);
    assert_eq!((bad.code, bad.stdout.as_str()), (2, ""), "{}", bad.stderr);
    assert!(bad.stderr.contains("my cert.pem"), "{}", bad.stderr);
    let home = env.path("caddy-home");
    std::fs::create_dir_all(&home).unwrap();
    let validate = Command::new(CADDY)
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(env.path("Caddyfile"))
        .env("HOME", &home)
        .env("XDG_DATA_HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "caddy validate:\n{generated}\n{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let log = std::fs::File::create(env.path("caddy.log")).unwrap();
    let _caddy = Proc(
        Command::new(CADDY)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(env.path("Caddyfile"))
            .env("HOME", &home)
            .env("XDG_DATA_HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for_port(caddy_port, "caddy");
    let c = Client {
        env,
        port: caddy_port,
    };

    // Mode `either` (acme): the address, or the space's certificate.
    assert_eq!(
        c.get("acme", "127.0.0.3", None, &[]),
        (200, "space=acme user= gate=ip forged=".to_owned())
    );
    assert_eq!(
        c.get("acme", "127.0.0.4", Some("alice"), &[]),
        (200, "space=acme user=alice gate=cert forged=".to_owned())
    );
    assert_eq!(c.get("acme", "127.0.0.4", None, &[]).0, 403);
    assert_eq!(c.get("acme", "127.0.0.4", Some("bob"), &[]).0, 403);
    // Mode `cert` (globex).
    assert_eq!(
        c.get("globex", "127.0.0.4", Some("bob"), &[]),
        (200, "space=globex user=bob gate=cert forged=".to_owned())
    );
    assert_eq!(c.get("globex", "127.0.0.3", Some("alice"), &[]).0, 403);
    assert_eq!(c.get("globex", "127.0.0.3", None, &[]).0, 401);

    // What a client could forge through Caddy: an address, a certificate
    // in any proxy's header, an identity for the upstream.
    let bob_pem = std::fs::read_to_string(env.path("bob.pem")).unwrap();
    let escaped = percent_escape(&bob_pem);
    let der_b64: String = bob_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for forged in [
        format!("X-SSL-Client-Cert: {escaped}"),
        format!("X-Amzn-Mtls-Clientcert: {escaped}"),
        format!("X-Forwarded-Client-Cert: Cert=\"{escaped}\""),
        format!("X-Forwarded-Tls-Client-Cert: {der_b64}"),
    ] {
        assert_eq!(
            c.get("globex", "127.0.0.4", None, &[&forged]).0,
            401,
            "{forged}"
        );
    }
    assert_eq!(
        c.get("acme", "127.0.0.4", None, &["X-Forwarded-For: 127.0.0.3"])
            .0,
        403
    );
    // Admitted by address (no user): the client's X-Eos-User never reaches
    // the upstream.
    assert_eq!(
        c.get(
            "acme",
            "127.0.0.3",
            None,
            &["X-Eos-User: mallory", "X-Eos-Gate: cert"]
        ),
        (200, "space=acme user= gate=ip forged=".to_owned())
    );

    // Revoked: refused within the reload interval.
    env.eos(&["ca", "revoke", &bob]);
    let after = within_reload(
        || c.get("globex", "127.0.0.4", Some("bob"), &[]).0,
        200,
        403,
    );
    eprintln!("caddy: revoked certificate refused after {after:?}");
}

const CADDY: &str = "caddy";

/// Caddy is an oracle like nginx: required under CI or
/// EOS_SEC_REQUIRE_ORACLES=1.
fn caddy_available() -> bool {
    available(&[("caddy", CADDY, "version")])
}

#[test]
fn authz_config_errors_name_the_file_and_line() {
    for (config, at, what) in [
        (
            "[authz]\n\nreload_interval = \"0s\"\n",
            ":3:",
            "more than zero",
        ),
        ("[authz]\nmax_connections = 0\n", ":2:", "nonzero"),
        (
            "[authz]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            ":2:",
            "10.0.0.0/33",
        ),
        (
            "[authz]\nlisen = \"127.0.0.1:1\"\n",
            ":2:",
            "unknown field `lisen`",
        ),
    ] {
        let st = State::new(config);
        let out = st.run(&["authz", "serve", "--policy", "policy.toml"]);
        assert_eq!(out.code, 2, "{config:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("eos-sec.toml{at}")) && out.stderr.contains(what),
            "{config:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn nginx_over_a_unix_socket_enforces_either() {
    if !oracles_available() {
        return;
    }
    let stack = stack_on(Transport::Unix);
    let env = &stack.env;
    env.issue("alice", "acme", "alice");
    env.issue("bob", "globex", "bob");
    let conf = std::fs::read_to_string(env.path("eos-authz.conf")).unwrap();
    let sock = env.path("authz.sock");
    assert!(
        conf.contains(&format!("server unix:{};", sock.display())),
        "{conf}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // nginx's workers run as nobody:nogroup when nginx starts as root: the
    // operator gives the proxy's user the socket's group (systemd's
    // `Group=`), here by hand. Without it nginx cannot connect at all.
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let c = stack.client();
    if root {
        assert_eq!(c.get("acme", "127.0.0.3", None, &[]).0, 500);
        let chgrp = Command::new("chgrp")
            .arg("nogroup")
            .arg(&sock)
            .status()
            .unwrap();
        assert!(chgrp.success());
    }
    // The address nginx saw is the client, though no proxy is configured
    // as trusted: the socket's peer is nginx.
    assert_either_admits_address_or_certificate(&c);
    // nginx overwrites what a client claims.
    let forged = c.get(
        "acme",
        "127.0.0.4",
        None,
        &["X-Forwarded-For: 127.0.0.3", "X-SSL-Client-Cert: x"],
    );
    assert_eq!(forged.0, 403);
    // A subrequest on the socket without an address is refused, not
    // admitted as some default client.
    let out = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "10",
            "--unix-socket",
            &sock.display().to_string(),
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            "--header",
            "Host: acme.eos.test",
            "http://authz/_eos_authz",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    // Stopped, the service removes its socket.
    let Stack { _authz, .. } = stack;
    drop(_authz);
    assert!(!sock.exists(), "the socket outlived the service");
}
