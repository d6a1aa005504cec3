//! Enforce and rollback moving an ALB listener's MutualAuthentication
//! (DescribeListeners, ModifyListener: moto implements neither for mutual
//! TLS), through the replay client: a `cert` space taken off → staged →
//! count → enforce → rollback → rollback, the listener, trust store and
//! revocations read back after every step; and the lockout guards, which
//! refuse with nothing written.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_smithy_http_client::test_util::ReplayEvent;
use der::Encode;
use eos_ca::{
    Account, CaEnv, CsrLimits, IssuancePolicy, IssueRequest, LocalCa, Profile, RevocationReason,
    RevokedEntry, Serial, plan_certificate, validate_csr,
};
use eos_identity::{SpaceId, UserId};
use eos_policy::compile::ListenerMode;
use eos_policy::edge::{EdgeGate, ListenerConfig};
use eos_policy::enforce::{
    EnforceOptions, GuardCode, RollbackOptions, enforce_with_gate, guard, rollback_with_gate,
};
use eos_policy::gate::{
    CrlFile, CrlRecord, GateBackend, ListenerAuth, ObjectRef, TrustMaterial, TrustStoreRecord,
    check_material, sha256_hex,
};
use eos_policy::{CertificateDer, Policy, PolicyError, Stage, UnixTime};
use eos_store::Store;
use eos_store::enforce::list_snapshots;
use eos_store::ipsets::LocalBackend;

use super::{ARN as TRUST_STORE_ARN, actions, gate, ok, response, revocations, sent, trust_store};

const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:111122223333:listener/app/eos/50dc6c495c0c9188/f2f7dc8efc522ab2";

const POLICY: &str = r#"
[web_acl]
name = "eos-restricted"
[routing]
by = "host-label"
domain = "entityos.cloud"
[spaces.globex]
mode = "cert"
[spaces.acme]
mode = "ip"
"#;

fn globex() -> SpaceId {
    SpaceId::new("globex").unwrap()
}

/// `MutualAuthentication` as DescribeListeners/ModifyListener return it.
fn listener_xml(auth: &ListenerAuth) -> String {
    let n = auth.normalized();
    let mut m = format!("<Mode>{}</Mode>", n.mode.as_str());
    if let Some(arn) = &n.trust_store_arn {
        m.push_str(&format!(
            "<TrustStoreArn>{arn}</TrustStoreArn><TrustStoreAssociationStatus>active</TrustStoreAssociationStatus>"
        ));
    }
    if let Some(i) = n.ignore_client_certificate_expiry {
        m.push_str(&format!(
            "<IgnoreClientCertificateExpiry>{i}</IgnoreClientCertificateExpiry>"
        ));
    }
    if let Some(a) = n.advertise_trust_store_ca_names {
        m.push_str(&format!(
            "<AdvertiseTrustStoreCaNames>{}</AdvertiseTrustStoreCaNames>",
            if a { "on" } else { "off" }
        ));
    }
    format!(
        "<Listeners><member><ListenerArn>{LISTENER}</ListenerArn>\
         <LoadBalancerArn>arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/eos/50dc6c495c0c9188</LoadBalancerArn>\
         <Port>443</Port><Protocol>HTTPS</Protocol>\
         <MutualAuthentication>{m}</MutualAuthentication></member></Listeners>"
    )
}

fn describe_listener(auth: &ListenerAuth) -> ReplayEvent {
    ok("DescribeListeners", &listener_xml(auth))
}

fn off() -> ListenerAuth {
    ListenerAuth::mode_only(ListenerMode::Off)
}

fn passthrough() -> ListenerAuth {
    ListenerAuth::mode_only(ListenerMode::Passthrough)
}

fn verify() -> ListenerAuth {
    ListenerAuth::verify(TRUST_STORE_ARN, true)
}

/// The trust store as published: ACTIVE, one CA certificate, CRL as
/// revocation 1 with `entries` entries.
fn trust_store_reads(entries: u64) -> [ReplayEvent; 2] {
    [
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, entries)),
        ok(
            "DescribeTrustStoreRevocations",
            &revocations(&[(1, entries)]),
        ),
    ]
}

/// A listener change: read, modify, read back.
fn modify(from: &ListenerAuth, to: &ListenerAuth) -> [ReplayEvent; 3] {
    [
        describe_listener(from),
        ok("ModifyListener", &listener_xml(to)),
        describe_listener(to),
    ]
}

/// What enforce reads first: the listener and its trust store.
fn plan_reads(listener: &ListenerAuth, entries: u64) -> Vec<ReplayEvent> {
    let mut v = vec![describe_listener(listener)];
    v.extend(trust_store_reads(entries));
    v
}

/// A local CA, the operator's certificate (acme/alice) and its serial.
struct Pki {
    ca: LocalCa,
    operator: Vec<CertificateDer<'static>>,
    serial: Serial,
    now: SystemTime,
}

fn pki() -> Pki {
    let now = SystemTime::now();
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400 * 30), now).unwrap();
    let pem = std::fs::read(format!(
        "{}/../../examples/data/csr/p256.csr",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let csr = validate_csr(&pem, &CsrLimits::default()).unwrap();
    let account = Account {
        space: SpaceId::new("acme").unwrap(),
        user: UserId::new("alice").unwrap(),
    };
    let req = IssueRequest {
        csr: &csr,
        account: &account,
        profile: Profile::Service,
        lifetime: None,
    };
    let plan = plan_certificate(ca.info(), &req, &IssuancePolicy::default(), None, now).unwrap();
    let cert = ca.sign(&plan).unwrap();
    Pki {
        operator: vec![CertificateDer::from(cert.to_der().unwrap())],
        serial: plan.serial().clone(),
        ca,
        now,
    }
}

impl Pki {
    /// The CA's bundle and a CRL revoking `revoked`, and eos-sec's record
    /// of having published them to the trust store as revocation 1.
    fn material(&self, revoked: &[Serial]) -> (TrustMaterial, TrustStoreRecord) {
        self.crl_material(7, revoked)
    }

    fn crl_material(&self, number: u64, revoked: &[Serial]) -> (TrustMaterial, TrustStoreRecord) {
        let entries: Vec<RevokedEntry> = revoked
            .iter()
            .map(|s| RevokedEntry {
                serial: s.clone(),
                revoked_at: self.now,
                reason: RevocationReason::KeyCompromise,
            })
            .collect();
        let crl = self
            .ca
            .crl(number, &entries, self.now, Duration::from_secs(3600))
            .unwrap();
        let pem = eos_ca::crl_pem(&crl).unwrap();
        let bundle = self.ca.trust_bundle().unwrap();
        let file = CrlFile {
            number,
            this_update: eos_ca::rfc3339(self.now),
            next_update: eos_ca::rfc3339(self.now + Duration::from_secs(3600)),
            pem: pem.clone().into_bytes(),
        };
        let material = check_material(bundle.as_bytes(), Some(file.clone())).unwrap();
        let object = |kind: &str, body: &[u8]| ObjectRef {
            bucket: "trust-bucket".to_owned(),
            key: format!("eos-sec/{kind}/{}.pem", sha256_hex(body)),
            version: None,
            sha256: sha256_hex(body),
        };
        let record = TrustStoreRecord {
            arn: TRUST_STORE_ARN.to_owned(),
            bundle: object("bundle", bundle.as_bytes()),
            crl: Some(CrlRecord {
                number,
                this_update: file.this_update,
                next_update: file.next_update,
                object: object("crl", pem.as_bytes()),
                revocation_id: 1,
                entries: revoked.len() as u64,
            }),
        };
        (material, record)
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    backend: LocalBackend,
    policy: Policy,
    listeners: Vec<ListenerConfig>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        store: Store::open(dir.path()).unwrap(),
        backend: LocalBackend::open(dir.path()).unwrap(),
        _dir: dir,
        policy: Policy::from_toml(POLICY, "policy.toml").unwrap(),
        listeners: vec![ListenerConfig {
            arn: LISTENER.to_owned(),
            spaces: vec![globex()],
            trust_store: "eos-ca".to_owned(),
            advertise_ca_names: true,
            ignore_client_certificate_expiry: false,
        }],
    }
}

impl Env {
    /// Enforce globex to `stage` with `events` answering the AWS calls;
    /// the parameters of every call sent.
    async fn enforce(
        &mut self,
        stage: Stage,
        material: &TrustMaterial,
        record: &TrustStoreRecord,
        operator: Option<&[CertificateDer<'static>]>,
        force: bool,
        events: Vec<ReplayEvent>,
    ) -> (
        Result<eos_policy::enforce::EnforceReport, PolicyError>,
        Vec<BTreeMap<String, String>>,
    ) {
        let (aws, client) = gate(events);
        let records = BTreeMap::from([("eos-ca".to_owned(), record.clone())]);
        let edge = EdgeGate {
            backend: &aws,
            listeners: &self.listeners,
            material: Ok(material),
            records: &records,
            operator_cert: operator,
            now: UnixTime::now(),
        };
        let opts = EnforceOptions {
            policy: &self.policy,
            space: globex(),
            target: Some(stage),
            operator_ips: Vec::new(),
            simulation: None,
            force,
            actor: "test".to_owned(),
        };
        let r = enforce_with_gate(
            &self.backend,
            &self.backend,
            Some(&edge),
            &mut self.store,
            &opts,
        )
        .await;
        (r, sent(&client))
    }

    /// [`Env::enforce`] to stage enforce.
    async fn enforce_verify(
        &mut self,
        material: &TrustMaterial,
        record: &TrustStoreRecord,
        operator: Option<&[CertificateDer<'static>]>,
        force: bool,
        events: Vec<ReplayEvent>,
    ) -> (
        Result<eos_policy::enforce::EnforceReport, PolicyError>,
        Vec<BTreeMap<String, String>>,
    ) {
        self.enforce(Stage::Enforce, material, record, operator, force, events)
            .await
    }

    async fn rollback(
        &mut self,
        trust: (&TrustMaterial, &TrustStoreRecord),
        operator: Option<&[CertificateDer<'static>]>,
        to: Option<i64>,
        events: Vec<ReplayEvent>,
    ) -> (
        Result<eos_policy::enforce::RollbackReport, PolicyError>,
        Vec<BTreeMap<String, String>>,
    ) {
        let (aws, client) = gate(events);
        let records = BTreeMap::from([("eos-ca".to_owned(), trust.1.clone())]);
        let edge = EdgeGate {
            backend: &aws,
            listeners: &self.listeners,
            material: Ok(trust.0),
            records: &records,
            operator_cert: operator,
            now: UnixTime::now(),
        };
        let opts = RollbackOptions {
            policy: &self.policy,
            space: globex(),
            to,
            actor: "test".to_owned(),
        };
        let r = rollback_with_gate(
            &self.backend,
            &self.backend,
            Some(&edge),
            &mut self.store,
            &opts,
        )
        .await;
        (r, sent(&client))
    }

    fn snapshots(&self) -> usize {
        list_snapshots(self.store.conn(), "local", "eos-restricted")
            .unwrap()
            .len()
    }

    fn audit_actions(&self) -> Vec<String> {
        // audit_log is newest first.
        let mut actions: Vec<String> = self
            .store
            .audit_log(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        actions.reverse();
        actions
    }
}

/// Read the listener and the trust store back through the SDK, as an
/// operator would check them: the listener's MutualAuthentication, the
/// trust store's status and certificates, its revocation ids.
async fn read_back(listener: &ListenerAuth, entries: u64) -> (ListenerAuth, Vec<i64>, usize) {
    let mut events = vec![describe_listener(listener)];
    events.extend(trust_store_reads(entries));
    let (aws, client) = gate(events);
    let l = aws.listener(LISTENER).await.unwrap().unwrap();
    let ts = aws.trust_store("eos-ca").await.unwrap().unwrap();
    assert_eq!(
        actions(&sent(&client)),
        [
            "DescribeListeners",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations"
        ]
    );
    assert_eq!(ts.status, "ACTIVE");
    (
        l,
        ts.revocations.iter().map(|r| r.id).collect(),
        ts.ca_certificates,
    )
}

#[tokio::test]
async fn a_cert_space_goes_off_count_enforce_and_back_with_its_listener() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    let mut e = env();
    let op = Some(pki.operator.as_slice());

    // off → staged: the listener is read and stays off; a snapshot with it.
    let (r, sent_) = e
        .enforce(
            Stage::Staged,
            &material,
            &record,
            op,
            false,
            plan_reads(&off(), 0),
        )
        .await;
    let r = r.unwrap();
    assert!(r.listener.is_none());
    assert_eq!(
        actions(&sent_),
        [
            "DescribeListeners",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations"
        ]
    );
    assert_eq!(sent_[0]["ListenerArns.member.1"], LISTENER);
    let staged_run = r.run.unwrap();
    assert_eq!(read_back(&off(), 0).await, (off(), vec![1], 1));

    // staged → count: passthrough, nobody is refused.
    let mut events = plan_reads(&off(), 0);
    events.extend(modify(&off(), &passthrough()));
    let (r, sent_) = e
        .enforce(Stage::Count, &material, &record, op, false, events)
        .await;
    let r = r.unwrap();
    let step = r.listener.unwrap();
    assert_eq!(
        (step.before.mode, step.after.mode),
        (ListenerMode::Off, ListenerMode::Passthrough)
    );
    assert_eq!(
        actions(&sent_)[3..],
        ["DescribeListeners", "ModifyListener", "DescribeListeners"]
    );
    let m = &sent_[4];
    assert_eq!(m["ListenerArn"], LISTENER);
    assert_eq!(m["MutualAuthentication.Mode"], "passthrough");
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Action",
            "ListenerArn",
            "MutualAuthentication.Mode",
            "Version"
        ],
        "passthrough takes no trust store"
    );
    assert_eq!(
        read_back(&passthrough(), 0).await,
        (passthrough(), vec![1], 1)
    );

    // count → enforce: verify against the trust store, expiry never ignored.
    let mut events = plan_reads(&passthrough(), 0);
    events.extend(modify(&passthrough(), &verify()));
    let (r, sent_) = e
        .enforce(Stage::Enforce, &material, &record, op, false, events)
        .await;
    let r = r.unwrap();
    assert!(r.forced.is_empty() && r.warnings.is_empty(), "{r:?}");
    let step = r.listener.unwrap();
    assert_eq!(step.after, verify());
    let m = &sent_[4];
    assert_eq!(m["Action"], "ModifyListener");
    assert_eq!(m["MutualAuthentication.Mode"], "verify");
    assert_eq!(m["MutualAuthentication.TrustStoreArn"], TRUST_STORE_ARN);
    assert_eq!(
        m["MutualAuthentication.IgnoreClientCertificateExpiry"],
        "false"
    );
    assert_eq!(m["MutualAuthentication.AdvertiseTrustStoreCaNames"], "on");
    assert_eq!(read_back(&verify(), 0).await, (verify(), vec![1], 1));
    let enforce_run = r.run.unwrap();

    // The snapshot before verify holds the listener, trust store, bundle
    // object and revocation ids.
    let snaps = list_snapshots(e.store.conn(), "local", "eos-restricted").unwrap();
    let first = snaps.iter().find(|s| s.id == enforce_run).unwrap();
    let g = first.gate.as_ref().unwrap();
    assert_eq!(g.listener_arn, LISTENER);
    assert!(g.listener.same_as(&passthrough()));
    assert_eq!(g.trust_store.arn.as_deref(), Some(TRUST_STORE_ARN));
    assert_eq!(
        g.trust_store.bundle_key.as_deref(),
        Some(record.bundle.key.as_str())
    );
    assert_eq!(g.trust_store.crl_number, Some(7));
    let ids: Vec<i64> = g.trust_store.revocations.iter().map(|r| r.id).collect();
    assert_eq!(ids, [1]);

    // rollback: the listener first, back to passthrough exactly.
    let mut events = plan_reads(&verify(), 0);
    events.extend(modify(&verify(), &passthrough()));
    let (r, sent_) = e.rollback((&material, &record), op, None, events).await;
    let r = r.unwrap();
    assert_eq!(r.snapshot, enforce_run);
    assert_eq!(r.listener.unwrap().after, passthrough().normalized());
    assert!(r.trust_store_changes.is_none());
    assert_eq!(sent_[4]["MutualAuthentication.Mode"], "passthrough");
    assert_eq!(
        read_back(&passthrough(), 0).await,
        (passthrough(), vec![1], 1)
    );

    // and to the start: off.
    let mut events = plan_reads(&passthrough(), 0);
    events.extend(modify(&passthrough(), &off()));
    let (r, sent_) = e
        .rollback((&material, &record), op, Some(staged_run), events)
        .await;
    let r = r.unwrap();
    assert_eq!(r.listener.unwrap().after, off());
    assert_eq!(sent_[4]["MutualAuthentication.Mode"], "off");
    assert_eq!(read_back(&off(), 0).await, (off(), vec![1], 1));

    // Run again: nothing to change, only reads.
    let (r, sent_) = e
        .rollback(
            (&material, &record),
            op,
            Some(staged_run),
            plan_reads(&off(), 0),
        )
        .await;
    let r = r.unwrap();
    assert!(r.was_noop(), "{r:?}");
    assert!(!actions(&sent_).contains(&"ModifyListener"));

    let audit = e.audit_actions();
    assert_eq!(
        audit.iter().filter(|a| *a == "listener.write").count(),
        4,
        "{audit:?}"
    );
}

/// A refused enforce: the guards' codes, the calls sent (reads only), no
/// snapshot, and the listener read back unchanged.
async fn refused(
    e: &mut Env,
    material: &TrustMaterial,
    record: &TrustStoreRecord,
    operator: Option<&[CertificateDer<'static>]>,
    force: bool,
    entries: u64,
) -> Vec<GuardCode> {
    let before = e.snapshots();
    let (r, sent_) = e
        .enforce_verify(
            material,
            record,
            operator,
            force,
            plan_reads(&passthrough(), entries),
        )
        .await;
    let codes = match r {
        Err(PolicyError::Refused { guards, .. }) => guards.iter().map(|g| g.code).collect(),
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        actions(&sent_),
        [
            "DescribeListeners",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations"
        ],
        "reads only"
    );
    assert_eq!(e.snapshots(), before, "no snapshot");
    assert_eq!(read_back(&passthrough(), entries).await.0, passthrough());
    codes
}

/// A space at count (listener passthrough), for the guard tests.
/// The warnings of the move to count.
async fn at_count(
    e: &mut Env,
    material: &TrustMaterial,
    record: &TrustStoreRecord,
    entries: u64,
) -> Vec<GuardCode> {
    let mut warnings = Vec::new();
    for (stage, events) in [
        (Stage::Staged, plan_reads(&off(), entries)),
        (Stage::Count, {
            let mut v = plan_reads(&off(), entries);
            v.extend(modify(&off(), &passthrough()));
            v
        }),
    ] {
        let r = e
            .enforce(stage, material, record, None, false, events)
            .await
            .0
            .unwrap();
        warnings = r.warnings.iter().map(|g| g.code).collect();
    }
    warnings
}

#[tokio::test]
async fn an_operator_certificate_the_new_crl_revokes_blocks_enforce() {
    let pki = pki();
    let (material, record) = pki.material(std::slice::from_ref(&pki.serial));
    let mut e = env();
    at_count(&mut e, &material, &record, 1).await;
    let codes = refused(&mut e, &material, &record, Some(&pki.operator), false, 1).await;
    assert_eq!(codes, [guard::OPERATOR_CERT]);
    let (r, _) = e
        .enforce_verify(
            &material,
            &record,
            Some(&pki.operator),
            false,
            plan_reads(&passthrough(), 1),
        )
        .await;
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("certificate revoked"), "{msg}");
}

#[tokio::test]
async fn an_operator_certificate_of_another_ca_or_none_blocks_enforce() {
    let pki = pki();
    let other = self::pki();
    let (material, record) = pki.material(&[]);
    let mut e = env();
    // Shown before the stage that would refuse.
    let warnings = at_count(&mut e, &material, &record, 0).await;
    assert_eq!(warnings, [guard::OPERATOR_CERT_UNKNOWN]);
    let codes = refused(&mut e, &material, &record, Some(&other.operator), false, 0).await;
    assert_eq!(codes, [guard::OPERATOR_CERT]);
    let codes = refused(&mut e, &material, &record, None, false, 0).await;
    assert_eq!(codes, [guard::OPERATOR_CERT_UNKNOWN]);
    // --force overrides it (audited), as for the operator's address.
    let mut events = plan_reads(&passthrough(), 0);
    events.extend(modify(&passthrough(), &verify()));
    let (r, _) = e
        .enforce(Stage::Enforce, &material, &record, None, true, events)
        .await;
    let r = r.unwrap();
    assert_eq!(r.forced.len(), 1);
    assert_eq!(r.forced[0].code, guard::OPERATOR_CERT_UNKNOWN);
}

#[tokio::test]
async fn a_stale_trust_store_blocks_enforce_even_with_force() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    // The CA has issued CRL 8 (revoking the operator's neighbour) since the
    // trust store got CRL 7: eos-sec's record still says 7.
    let (newer, _) = pki.crl_material(8, &[Serial::from_hex("1234").unwrap()]);
    let mut e = env();
    at_count(&mut e, &material, &record, 0).await;
    let codes = refused(&mut e, &newer, &record, Some(&pki.operator), true, 0).await;
    assert_eq!(codes, [guard::TRUST_STORE_STALE]);
    // The revocation files on the store are not the recorded one.
    let mut events = vec![describe_listener(&passthrough())];
    events.push(ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)));
    events.push(ok(
        "DescribeTrustStoreRevocations",
        &revocations(&[(1, 0), (2, 0)]),
    ));
    let (r, sent_) = e
        .enforce_verify(&material, &record, Some(&pki.operator), true, events)
        .await;
    match r {
        Err(PolicyError::Refused { guards, .. }) => {
            assert_eq!(guards[0].code, guard::TRUST_STORE_STALE);
            assert!(
                guards[0].message.contains("revocation files"),
                "{}",
                guards[0]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!actions(&sent_).contains(&"ModifyListener"));
    // Still CREATING.
    let mut events = vec![describe_listener(&passthrough())];
    events.push(ok("DescribeTrustStores", &trust_store("CREATING", 1, 0)));
    events.push(ok("DescribeTrustStoreRevocations", &revocations(&[(1, 0)])));
    let (r, _) = e
        .enforce_verify(&material, &record, Some(&pki.operator), false, events)
        .await;
    assert!(r.unwrap_err().to_string().contains("CREATING"));
}

#[tokio::test]
async fn a_listener_shared_by_spaces_that_need_different_modes_is_refused() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    let mut e = env();
    // acme (mode ip) needs no client certificate on the listener that
    // globex's `cert` needs: a warning at count, a refusal of verify that
    // --force does not override.
    e.listeners[0].spaces.push(SpaceId::new("acme").unwrap());
    let warnings = at_count(&mut e, &material, &record, 0).await;
    assert_eq!(
        warnings,
        [guard::LISTENER_SHARED, guard::OPERATOR_CERT_UNKNOWN]
    );
    let codes = refused(&mut e, &material, &record, Some(&pki.operator), true, 0).await;
    assert_eq!(codes, [guard::LISTENER_SHARED]);
}

#[tokio::test]
async fn verify_ignoring_expiry_is_refused() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    let mut e = env();
    e.listeners[0].ignore_client_certificate_expiry = true;
    at_count(&mut e, &material, &record, 0).await;
    let codes = refused(&mut e, &material, &record, Some(&pki.operator), true, 0).await;
    assert_eq!(codes, [guard::IGNORE_EXPIRY]);
}

#[tokio::test]
async fn a_listener_that_does_not_read_back_stops_enforce() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    let mut e = env();
    at_count(&mut e, &material, &record, 0).await;
    let mut events = plan_reads(&passthrough(), 0);
    events.push(describe_listener(&passthrough()));
    events.push(ok("ModifyListener", &listener_xml(&verify())));
    // Somebody (or a lagging read) still shows passthrough.
    events.push(describe_listener(&passthrough()));
    let (r, _) = e
        .enforce_verify(&material, &record, Some(&pki.operator), false, events)
        .await;
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("ALB listener") && msg.contains("read back passthrough"),
        "{msg}"
    );
    // The stage stays count: a rerun of enforce carries on.
    use eos_policy::enforce::EnforceJournal;
    let stages = e.store.stages("local", "eos-restricted").unwrap();
    assert_eq!(stages.get(&globex()), Some(&Stage::Count));
}

#[tokio::test]
async fn a_missing_listener_is_bad_input() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    let mut e = env();
    let not_found = response(
        400,
        format!(
            "<ErrorResponse xmlns=\"{}\"><Error><Type>Sender</Type><Code>ListenerNotFound</Code>\
             <Message>One or more listeners not found</Message></Error><RequestId>x</RequestId></ErrorResponse>",
            super::NS
        ),
    );
    let (r, _) = e
        .enforce(
            Stage::Staged,
            &material,
            &record,
            None,
            false,
            vec![not_found],
        )
        .await;
    let err = r.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert_eq!(
        err.to_string(),
        format!("ALB listener {LISTENER} does not exist")
    );
    assert_eq!(e.snapshots(), 0);
}

#[tokio::test]
async fn rolling_back_to_verify_runs_the_guards() {
    let pki = pki();
    let (material, record) = pki.material(&[]);
    let op = Some(pki.operator.as_slice());
    let mut e = env();
    at_count(&mut e, &material, &record, 0).await;
    let mut events = plan_reads(&passthrough(), 0);
    events.extend(modify(&passthrough(), &verify()));
    e.enforce_verify(&material, &record, op, false, events)
        .await
        .0
        .unwrap();
    let mut events = plan_reads(&verify(), 0);
    events.extend(modify(&verify(), &passthrough()));
    let (r, _) = e.rollback((&material, &record), op, None, events).await;
    // The rollback's own snapshot holds the listener in verify.
    let at_verify = r.unwrap().listener.unwrap().snapshot;

    // Since then the CA revoked the operator's certificate (CRL 8, on the
    // trust store): going back to verify would lock the operator out.
    let (revoked, revoked_record) = pki.crl_material(8, std::slice::from_ref(&pki.serial));
    let before = e.snapshots();
    let (r, sent_) = e
        .rollback(
            (&revoked, &revoked_record),
            op,
            Some(at_verify),
            plan_reads(&passthrough(), 1),
        )
        .await;
    match r {
        Err(PolicyError::Refused { what, guards }) => {
            assert_eq!(what, "rollback");
            let codes: Vec<GuardCode> = guards.iter().map(|g| g.code).collect();
            assert_eq!(codes, [guard::OPERATOR_CERT]);
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(!actions(&sent_).contains(&"ModifyListener"));
    assert_eq!(e.snapshots(), before, "no snapshot");

    // With a certificate the CRL does not revoke, verify comes back exactly.
    let mut events = plan_reads(&passthrough(), 0);
    events.extend(modify(&passthrough(), &verify()));
    let (r, sent_) = e
        .rollback((&material, &record), op, Some(at_verify), events)
        .await;
    assert_eq!(r.unwrap().listener.unwrap().after, verify());
    assert_eq!(sent_[4]["MutualAuthentication.Mode"], "verify");
    assert_eq!(
        sent_[4]["MutualAuthentication.TrustStoreArn"],
        TRUST_STORE_ARN
    );
}
