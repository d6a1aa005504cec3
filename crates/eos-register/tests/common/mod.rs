//! A registration service on loopback with TLS, a real client that trusts
//! the test CA (made with eos-ca), and helpers to issue codes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eos_ca::{
    CaEnv, Certificate, CertificatePlan, CsrLimits, IssuancePolicy, IssueError, LocalCa, Serial,
    Signer, Strictness, ValidatedCsr, Withdrawal,
};
use eos_codes::{BackoffPolicy, IssueRequest, Pepper, PepperRing, Purpose, Purposes};
use eos_identity::{Role, SpaceId, UserId};
use eos_ops::issuance::CaSetup;
use eos_register::{Registrar, ServeOptions, Service, ShutdownTrigger, shutdown_pair};
use eos_store::Store;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The project's rule for outside oracles (as `eos_aws::moto::oracles_required`,
/// without linking the AWS SDK into this crate's tests and benches): under CI
/// or `EOS_SEC_REQUIRE_ORACLES` a missing one fails instead of skipping.
pub fn oracles_required() -> bool {
    let set =
        |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("EOS_SEC_REQUIRE_ORACLES") || set("CI")
}

pub const PEPPER: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";

pub fn ring() -> PepperRing {
    PepperRing::new(Pepper::from_hex(PEPPER, "test").unwrap(), vec![])
}

/// A TLS server certificate for 127.0.0.1 signed by the CA's key.
fn server_cert(ca: &LocalCa) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem(None).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.certificate_pem().unwrap(), ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    pub ca_pem: String,
    pub server_chain: Vec<CertificateDer<'static>>,
    /// The CA's key, PEM (to issue test certificates into the store).
    pub ca_key_pem: String,
    store_url: Option<eos_store::StoreUrl>,
    /// On PostgreSQL, one connection for issuing codes (not one per code).
    issuer: std::sync::Mutex<Option<Store>>,
    trigger: ShutdownTrigger,
    handle: Option<tokio::task::JoinHandle<Result<(), eos_register::RegisterError>>>,
}

pub struct Setup {
    pub options: ServeOptions,
    pub backoff: BackoffPolicy,
    pub with_ca: bool,
    pub signing: Signing,
    /// Where the service listens [default: 127.0.0.1:0]. Clients always
    /// connect to 127.0.0.1 (on `[::]`, a dual-stack listener, they arrive
    /// as `::ffff:127.0.0.1`).
    pub listen: SocketAddr,
    /// TLS (the default) or plain HTTP, as behind a load balancer.
    pub tls: bool,
    /// The state store on PostgreSQL at this URL instead of SQLite in the
    /// harness's directory (several harnesses on one URL: several
    /// instances sharing one database).
    pub store_url: Option<eos_store::StoreUrl>,
}

/// How the test CA signs.
#[derive(Clone, Default)]
pub enum Signing {
    /// The local CA key, at once.
    #[default]
    Local,
    /// The local CA key once the test opens the gate: a remote CA that
    /// takes its time (AWS Private CA answers in seconds) and keeps what it
    /// signs, so a withdrawn certificate is revoked (noted in the gate).
    Gated(Arc<Gate>),
    /// A remote CA that fails.
    Failing,
    /// The local CA key after this long: a remote CA's latency (the load
    /// benchmark).
    Delayed(Duration),
}

/// Each signature adds a permit to `started` when it begins and takes one
/// from `open` before it finishes: the test waits for the first and hands
/// out the second. `revoked` lists the serials withdrawn from this CA;
/// with `refuse_revocation` set, withdrawing fails instead.
pub struct Gate {
    pub started: tokio::sync::Semaphore,
    pub open: tokio::sync::Semaphore,
    pub revoked: std::sync::Mutex<Vec<String>>,
    pub refuse_revocation: std::sync::atomic::AtomicBool,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            started: tokio::sync::Semaphore::new(0),
            open: tokio::sync::Semaphore::new(0),
            revoked: std::sync::Mutex::default(),
            refuse_revocation: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn revoked(&self) -> Vec<String> {
        self.revoked.lock().unwrap().clone()
    }

    /// Wait until one more signature has begun.
    pub async fn wait_started(&self) {
        self.started.acquire().await.unwrap().forget();
    }

    /// Let `n` signatures finish.
    pub fn open(&self, n: usize) {
        self.open.add_permits(n);
    }
}

/// The local CA key behind [`Signing`].
struct TestSigner {
    ca: LocalCa,
    signing: Signing,
}

impl Signer for TestSigner {
    async fn issue(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> Result<Certificate, IssueError> {
        match &self.signing {
            Signing::Local => {}
            Signing::Gated(gate) => {
                gate.started.add_permits(1);
                gate.open.acquire().await.unwrap().forget();
            }
            Signing::Delayed(latency) => tokio::time::sleep(*latency).await,
            Signing::Failing => {
                return Err(IssueError::Signer(
                    "the remote CA is unavailable (test)".to_owned(),
                ));
            }
        }
        self.ca.issue(plan, csr).await
    }

    fn strictness(&self) -> Strictness {
        self.ca.strictness()
    }

    async fn withdraw(&self, serial: &Serial) -> Result<Withdrawal, IssueError> {
        match &self.signing {
            Signing::Gated(gate) => {
                if gate
                    .refuse_revocation
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(IssueError::Signer(
                        "RevokeCertificate throttled (test)".to_owned(),
                    ));
                }
                gate.revoked.lock().unwrap().push(serial.to_string());
                Ok(Withdrawal::Revoked)
            }
            _ => self.ca.withdraw(serial).await,
        }
    }
}

impl Default for Setup {
    fn default() -> Self {
        let mut options = ServeOptions::default();
        // Generous limits: tests of the rate limiter set their own.
        options.limits.per_source_per_minute = 6000.try_into().unwrap();
        options.limits.per_source_burst = 1000.try_into().unwrap();
        Setup {
            options,
            backoff: BackoffPolicy::default(),
            with_ca: true,
            signing: Signing::Local,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            store_url: None,
        }
    }
}

impl Setup {
    /// Three free failures, then a wait of 30 s that a test never sits out:
    /// every further check from the source is throttled.
    pub fn slow_backoff() -> Setup {
        Setup {
            backoff: BackoffPolicy {
                free_failures: 3,
                base: Duration::from_secs(30),
                max: Duration::from_secs(900),
                reset_after: Duration::from_secs(3600),
            },
            ..Setup::default()
        }
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // Made a week ago, so tests can put certificates into the store
        // as if it had issued them days before.
        let week = Duration::from_secs(86400 * 7);
        let ca = LocalCa::generate(
            CaEnv::Dev,
            Duration::from_secs(86400 * 30) + week,
            SystemTime::now() - week,
        )
        .unwrap();
        let ca_pem = ca.certificate_pem().unwrap();
        let ca_key_pem = ca.key_pem(None).unwrap().to_string();
        let (chain, key) = server_cert(&ca);
        let client_ca = setup.with_ca.then_some(ca_pem.as_str());
        let tls = eos_register::server_config(chain.clone(), key, client_ca).unwrap();
        let store = match &setup.store_url {
            // The synchronous driver blocks on a runtime of its own: off
            // this one's worker (a multi-threaded runtime: the benchmark).
            Some(url) => tokio::task::block_in_place(|| Store::open_postgres(url)).unwrap(),
            None => Store::open(&dir.path().join("state")).unwrap(),
        };
        let ca_setup = setup.with_ca.then(|| {
            let info = ca.info().clone();
            let chain = ca.trust_bundle().unwrap();
            CaSetup::new(
                TestSigner {
                    ca,
                    signing: setup.signing,
                },
                info,
                eos_store::certs::LOCAL_SIGNER.to_owned(),
                chain,
                IssuancePolicy::default(),
                CsrLimits::default(),
            )
        });
        let registrar = Registrar::new(store, ring(), setup.backoff, ca_setup, setup.options);
        let listener = tokio::net::TcpListener::bind(setup.listen).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], listener.local_addr().unwrap().port()));
        let (trigger, shutdown) = shutdown_pair();
        let tls = setup.tls.then_some(tls);
        let handle = tokio::spawn(Service::new(registrar).serve(listener, tls, shutdown, None));
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Harness {
            dir,
            addr,
            url: format!(
                "{}://127.0.0.1:{}",
                if setup.tls { "https" } else { "http" },
                addr.port()
            ),
            client,
            ca_pem,
            server_chain: chain,
            ca_key_pem,
            store_url: setup.store_url,
            issuer: std::sync::Mutex::new(None),
            trigger,
            handle: Some(handle),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A second connection to the service's store (WAL: reads see commits).
    pub fn store(&self) -> Store {
        match &self.store_url {
            Some(url) => tokio::task::block_in_place(|| Store::open_postgres(url)).unwrap(),
            None => Store::open(&self.state_dir()).unwrap(),
        }
    }

    pub fn issue(&self, req: &IssueRequest) -> String {
        let issue = |store: &mut Store| {
            let (code, _) = store
                .issue_code(&ring(), req, eos_codes::unix_now(), "test")
                .unwrap();
            code.reveal().to_string()
        };
        if self.store_url.is_none() {
            return issue(&mut self.store());
        }
        let mut issuer = self.issuer.lock().unwrap();
        tokio::task::block_in_place(|| issue(issuer.get_or_insert_with(|| self.store())))
    }

    pub fn issue_for(&self, user: &str, purposes: &[Purpose]) -> String {
        self.issue(
            &IssueRequest::onboarding(
                SpaceId::new("acme").unwrap(),
                UserId::new(user).unwrap(),
                Role::User,
                Purposes::new(purposes.iter().copied()).unwrap(),
            )
            .unwrap(),
        )
    }

    pub fn issue_recovery(&self, user: &str) -> String {
        self.issue(
            &IssueRequest::recovery(
                SpaceId::new("acme").unwrap(),
                UserId::new(user).unwrap(),
                Role::Admin,
            )
            .unwrap(),
        )
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.post_from(path, body, None).await
    }

    /// POST, with an `X-Forwarded-For` (the tests that set trusted proxies
    /// use it to stand for different client addresses).
    pub async fn post_from(
        &self,
        path: &str,
        body: serde_json::Value,
        xff: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.post(format!("{}{path}", self.url)).json(&body);
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// The service's CA as a `CaSetup` of its own (the same key, recorded
    /// as the same signer), to put certificates into the store as if it
    /// had issued them at another time.
    pub fn ca_setup(&self, policy: IssuancePolicy) -> CaSetup {
        let ca = LocalCa::from_pem(&self.ca_key_pem, &self.ca_pem, None).unwrap();
        CaSetup::local(ca, policy, CsrLimits::default()).unwrap()
    }

    /// A certificate of the service's CA for `user` in space `acme` with
    /// `profile`, recorded as issued at `at` (so it is as old as a test
    /// needs) with `lifetime`, for a fresh key. Returns (certificate PEM,
    /// serial, key).
    pub async fn issued_at(
        &self,
        user: &str,
        profile: eos_ca::Profile,
        lifetime: Duration,
        at: SystemTime,
    ) -> (String, String, rcgen::KeyPair) {
        let (csr, key) = csr();
        let ca = self.ca_setup(IssuancePolicy::default());
        let (pem, serial) =
            issue_into(&mut self.store(), &ca, &csr, user, profile, lifetime, at).await;
        (pem, serial, key)
    }

    /// A client of its own (its own connections), verifying the service
    /// with the CA, presenting no certificate.
    pub fn client_without_identity(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// A client that presents `cert_pem` with `key` in the TLS handshake.
    pub fn client_with(&self, cert_pem: &str, key: &rcgen::KeyPair) -> reqwest::Client {
        let identity =
            reqwest::Identity::from_pem(format!("{}{cert_pem}", key.serialize_pem()).as_bytes())
                .unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .identity(identity)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// POST JSON with `client`, extra headers; (status, body).
    pub async fn post_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Result<(u16, serde_json::Value), reqwest::Error> {
        let mut req = client.post(format!("{}{path}", self.url)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
    }

    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// A P-256 CSR, PEM, and its key.
pub fn csr() -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["ignored.example".to_owned()]).unwrap();
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key)
}

/// The `i`-th wrong guess at `real`'s secret: the same code id, another
/// secret, a valid check symbol — so every guess reaches the hash check.
pub fn guess(real: &str, i: u32) -> String {
    let last = eos_codes::format::CODE_LEN - 2;
    tweak(real, |v| {
        v[last] = (v[last] + 1 + (i % 31) as u8) % 32;
        v[last - 1] = (v[last - 1] + (i / 31) as u8) % 32;
    })
}

/// A well-formed code with another (unknown) id.
pub fn with_other_id(real: &str) -> String {
    tweak(real, |v| v[0] = (v[0] + 1) % 32)
}

fn tweak(real: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    use eos_codes::format::{ALPHABET, CODE_LEN, check_symbol, symbol_value};
    let mut v: Vec<u8> = real
        .trim_start_matches("EOS-")
        .chars()
        .filter(|&c| c != '-')
        .map(|c| symbol_value(c).unwrap())
        .collect();
    change(&mut v);
    v[CODE_LEN - 1] = check_symbol(&v[..CODE_LEN - 1]);
    v.iter()
        .map(|&s| char::from(ALPHABET[usize::from(s)]))
        .collect()
}

/// Issue `csr` with `ca` into `store` for `acme`/`user` as at `at`.
/// Returns (certificate PEM, serial).
pub async fn issue_into(
    store: &mut Store,
    ca: &CaSetup,
    csr: &str,
    user: &str,
    profile: eos_ca::Profile,
    lifetime: Duration,
    at: SystemTime,
) -> (String, String) {
    let account = eos_ca::Account {
        space: SpaceId::new("acme").unwrap(),
        user: UserId::new(user).unwrap(),
    };
    let tx = store.transaction().unwrap();
    let issued = eos_ops::issuance::issue_in(
        &tx,
        ca,
        &eos_ops::issuance::IssueInput {
            csr: csr.as_bytes(),
            account: &account,
            profile,
            lifetime: Some(lifetime),
        },
        &eos_ops::issuance::IssueAudit {
            actor: "test",
            action: "ca.sign",
            extra: serde_json::Map::new(),
        },
        at,
    )
    .await
    .unwrap();
    tx.commit().unwrap();
    (issued.pem, issued.serial.to_string())
}

/// A benchmark's `--name N` argument (the load and renew benches).
pub fn bench_arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// The `p` percentile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
