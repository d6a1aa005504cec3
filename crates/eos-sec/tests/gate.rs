//! `eos-sec gate publish|status` with a local CA, against a private moto
//! server (S3 and API Gateway v2; read back with boto3). ELBv2 trust
//! stores, which moto lacks, are covered by eos-aws's replay tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "gate/crash.rs"]
mod crash;
#[path = "gate/evidence.rs"]
mod evidence;
#[path = "gate/postgres.rs"]
mod postgres;

use common::State;
use eos_aws::moto::MotoServer;

const POLICY: &str = r#"
[web_acl]
name = "eos-restricted"

[routing]
by = "host-label"
domain = "entityos.cloud"

[spaces.acme]
mode = "cert"

[spaces.beta]
mode = "ip"
"#;

fn sha256(body: &str) -> String {
    eos_policy::gate::sha256_hex(body.as_bytes())
}

#[test]
fn rejects_publish_without_a_bucket_or_a_target() {
    let st = State::new("");
    let o = st.run(&["gate", "publish"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("[gate] bucket is not set"),
        "{}",
        o.stderr
    );
    let st = State::new("[gate]\nbucket = \"trust\"\n");
    let o = st.run(&["gate", "status"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("nothing uses the published bundle"),
        "{}",
        o.stderr
    );
}

#[test]
fn rejects_an_expired_crl_before_any_call() {
    // The endpoint is never reached: nothing listens there.
    let st = State::new(
        "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n\
         [ca]\ncrl_validity = \"1s\"\n[gate]\nbucket = \"trust\"\ntrust_stores = [\"eos-ca\"]\n",
    );
    st.ok(&["ca", "init", "--env", "dev"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let o = st.run(&["gate", "publish"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("CRL 1 expired at"), "{}", o.stderr);
}

#[test]
fn rejects_a_bad_trust_store_name_without_calling_it() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let Some(_) = moto.boto3("boto3.client('s3', **kw).create_bucket(Bucket='trust')") else {
        return;
    };
    let mut st = State::new(&format!(
        "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[gate]\nbucket = \"trust\"\ntrust_stores = [\"eos_ca\"]\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    st.ok(&["ca", "init", "--env", "dev"]);
    let o = st.run(&["--json", "gate", "publish"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(report["targets"][0]["status"], "failed");
    assert!(
        report["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("trust store name: `eos_ca`"),
        "{report}"
    );
    // moto has no trust stores: the live read fails in its row (exit 1),
    // and the recorded error is shown beside it.
    let status = st.run(&["--json", "gate", "status"]);
    assert_eq!(status.code, 1, "{}", status.stderr);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(
        status["trust_stores"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("eos_ca"),
        "{status}"
    );
}

#[test]
fn publish_puts_bundle_and_crl_in_s3_and_a_revocation_publishes_the_new_crl() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let Some(_) = moto.boto3("boto3.client('s3', **kw).create_bucket(Bucket='trust')") else {
        return;
    };
    let mut st = State::new(&format!(
        "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
         [policy]\nfile = \"policy.toml\"\n\
         [gate]\nbucket = \"trust\"\nprefix = \"edge/\"\n\
         [[gate.domains]]\nname = \"api.acme.example\"\nspaces = [\"acme\", \"beta\"]\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    std::fs::write(st.path().join("policy.toml"), POLICY).unwrap();
    st.ok(&["ca", "init", "--env", "dev"]);
    let bundle = st.json(&["ca", "bundle"])["pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let bundle_key = format!("edge/bundle/{}.pem", sha256(&bundle));
    // The domain (made by whoever owns it) already trusts this bundle.
    moto.boto3(&format!(
        "boto3.client('apigatewayv2', **kw).create_domain_name(DomainName='api.acme.example', \
         DomainNameConfigurations=[{{'CertificateArn': 'arn:aws:acm:us-east-1:111122223333:certificate/x', 'EndpointType': 'REGIONAL'}}], \
         MutualTlsAuthentication={{'TruststoreUri': 's3://trust/{bundle_key}'}})"
    ))
    .unwrap();

    let report = st.json(&["gate", "publish"]);
    assert_eq!(report["bundle"]["key"], bundle_key.as_str());
    assert_eq!(report["crl"]["number"], 1);
    assert_eq!(report["targets"][0]["kind"], "domain");
    assert_eq!(report["targets"][0]["status"], "unchanged");
    // acme (cert) behind API Gateway with 90-day browser certificates is
    // warned about; beta (ip) is not.
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("space acme (mode cert)")
    );

    let body = moto
        .boto3(&format!(
            "sys.stdout.write(boto3.client('s3', **kw).get_object(Bucket='trust', Key='{bundle_key}')['Body'].read().decode())"
        ))
        .unwrap();
    assert_eq!(body, bundle);

    let status = st.json(&["gate", "status"]);
    assert_eq!(status["wants"]["bundle_key"], bundle_key.as_str());
    assert_eq!(status["wants"]["crl_number"], 1);
    assert_eq!(status["domains"][0]["in_sync"], true);
    assert_eq!(
        status["domains"][0]["bundle_sha256"],
        sha256(&bundle).as_str()
    );

    // A revocation makes CRL 2; publishing puts it beside CRL 1 (a new
    // content address: nothing a trust store points at is overwritten).
    revoke_one(&st);
    let report = st.json(&["gate", "publish"]);
    assert_eq!(report["crl"]["number"], 2);
    assert_eq!(report["crl"]["entries"], 1);
    let crl_key = report["crl"]["object"]["key"].as_str().unwrap().to_owned();
    let listing = moto
        .boto3(
            "print(json.dumps(sorted(o['Key'] for o in boto3.client('s3', **kw).list_objects_v2(Bucket='trust', Prefix='edge/crl/')['Contents'])))",
        )
        .unwrap();
    let keys: Vec<String> = serde_json::from_str(&listing).unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&crl_key));
    let crl = moto
        .boto3(&format!(
            "sys.stdout.write(boto3.client('s3', **kw).get_object(Bucket='trust', Key='{crl_key}')['Body'].read().decode())"
        ))
        .unwrap();
    assert_eq!(
        crl,
        std::fs::read_to_string(st.path().join("state/ca/crl.pem")).unwrap()
    );
}

/// moto with bucket `trust` and domain `api.acme.example` trusting the
/// state's CA bundle; a local CA; `[gate]` with that domain plus `extra`.
fn synced_gate(extra: &str) -> Option<(MotoServer, State)> {
    synced_gate_with(extra, Vec::new())
}

/// [`synced_gate`] with `env` for every command (before the CA is made).
fn synced_gate_with(extra: &str, env: Vec<(&'static str, String)>) -> Option<(MotoServer, State)> {
    let moto = MotoServer::start()?;
    moto.boto3("boto3.client('s3', **kw).create_bucket(Bucket='trust')")?;
    let mut st = State::new(&format!(
        "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
         [gate]\nbucket = \"trust\"\n{extra}\n\
         [[gate.domains]]\nname = \"api.acme.example\"\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    st.env.extend(env);
    st.ok(&["ca", "init", "--env", "dev"]);
    let bundle = st.json(&["ca", "bundle"])["pem"]
        .as_str()
        .unwrap()
        .to_owned();
    moto.boto3(&format!(
        "boto3.client('apigatewayv2', **kw).create_domain_name(DomainName='api.acme.example', \
         DomainNameConfigurations=[{{'CertificateArn': 'arn:aws:acm:us-east-1:111122223333:certificate/x', 'EndpointType': 'REGIONAL'}}], \
         MutualTlsAuthentication={{'TruststoreUri': 's3://trust/eos-sec/bundle/{}.pem'}})",
        sha256(&bundle)
    ))
    .unwrap();
    Some((moto, st))
}

/// Sign a certificate for acme/alice (a fresh key); its serial.
fn sign_one(st: &State) -> String {
    sign_for(st, "acme", "alice")
}

/// Sign a certificate for `space`/`user` (a fresh key); its serial.
fn sign_for(st: &State, space: &str, user: &str) -> String {
    let openssl = |args: &[&str]| st.openssl(args);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "a.key",
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "a.key",
        "-subj",
        "/CN=ignored",
        "-out",
        "req.csr",
    ]);
    let signed = st.json(&[
        "ca",
        "sign",
        "--csr",
        "req.csr",
        "--space",
        space,
        "--user",
        user,
        "--profile",
        "device",
    ]);
    signed["serial"].as_str().unwrap().to_owned()
}

/// Sign a certificate for acme/alice and revoke it: the next CRL.
fn revoke_one(st: &State) {
    let serial = sign_one(st);
    st.ok(&["ca", "revoke", &serial, "--reason", "key-compromise"]);
}

fn s3_crls(moto: &MotoServer) -> Vec<String> {
    let listing = moto
        .boto3(
            "r = boto3.client('s3', **kw).list_objects_v2(Bucket='trust', Prefix='eos-sec/crl/')\n\
             print(json.dumps([boto3.client('s3', **kw).get_object(Bucket='trust', Key=o['Key'])['Body'].read().decode() for o in r.get('Contents', [])]))",
        )
        .unwrap();
    serde_json::from_str(&listing).unwrap()
}

#[test]
fn a_revocation_reaches_s3_and_the_domain_through_sync() {
    let Some((moto, st)) = synced_gate("") else {
        return;
    };
    revoke_and_sync(&moto, &st);
    // A second pass has nothing queued and sends nothing.
    let out = st.ok(&["sync"]);
    assert!(!out.stdout.contains("certificate gate"), "{}", out.stdout);
}

/// Revoke a certificate: its CRL is queued in the revocation's transaction
/// (nothing published yet), and `sync` delivers it to S3 and the domain.
fn revoke_and_sync(moto: &MotoServer, st: &State) {
    revoke_one(st);
    let status = st.json(&["sync", "status"]);
    assert_eq!(status["gate"]["pending_crls"], serde_json::json!([2]));
    assert!(s3_crls(moto).is_empty());

    let out = st.ok(&["sync"]);
    assert!(
        out.stdout
            .contains("certificate gate: CRL 2 on 1 targets (1 queued delivered"),
        "{}",
        out.stdout
    );
    let crl = std::fs::read_to_string(st.path().join("state/ca/crl.pem")).unwrap();
    assert_eq!(s3_crls(moto), [crl]);
    let status = st.json(&["sync", "status"]);
    assert_eq!(status["gate"]["pending_crls"], serde_json::json!([]));
    assert_eq!(status["gate"]["targets"][0]["name"], "api.acme.example");
    assert_eq!(
        status["gate"]["targets"][0]["last_error"],
        serde_json::Value::Null
    );
}

#[test]
fn a_target_that_fails_keeps_the_crl_pending_with_its_error() {
    // moto has no ELBv2 trust stores: every call to one fails.
    let Some((moto, st)) = synced_gate("trust_stores = [\"eos-ca\"]") else {
        return;
    };
    revoke_one(&st);
    let o = st.run(&["sync"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("CRL 2 stays pending"), "{}", o.stderr);
    // The object is in S3 (content-addressed, harmless), the row pending.
    assert_eq!(s3_crls(&moto).len(), 1);
    let status = st.json(&["sync", "status"]);
    assert_eq!(status["gate"]["pending_crls"], serde_json::json!([2]));
    let targets = status["gate"]["targets"].as_array().unwrap();
    let ts = targets.iter().find(|t| t["kind"] == "trust-store").unwrap();
    assert!(
        ts["last_error"]
            .as_str()
            .unwrap()
            .contains("DescribeTrustStores eos-ca"),
        "{ts}"
    );
    let human = st.ok(&["sync", "status"]).stdout;
    assert!(human.contains("trust-store  eos-ca"), "{human}");
}

/// `sync --watch` as a child process, killed when dropped.
struct Watching(std::process::Child);

impl Watching {
    fn start(st: &State) -> Watching {
        let child = st
            .command()
            .args(["sync", "--watch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Watching(child)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn sync_watch_delivers_each_revocation_within_seconds() {
    let Some((moto, st)) = synced_gate("") else {
        return;
    };
    let _watching = Watching::start(&st);
    let mut lags = Vec::new();
    for _ in 0..5 {
        let serial = sign_one(&st);
        let start = std::time::Instant::now();
        st.ok(&["ca", "revoke", &serial, "--reason", "key-compromise"]);
        loop {
            let status = st.json(&["sync", "status"]);
            if status["gate"]["pending_crls"] == serde_json::json!([]) {
                break;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "not delivered within 10 s: {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        lags.push(start.elapsed());
    }
    eprintln!("ca revoke started -> CRL read back on every gate target (sync --watch): {lags:?}");
    let crl = std::fs::read_to_string(st.path().join("state/ca/crl.pem")).unwrap();
    assert!(s3_crls(&moto).contains(&crl));
    assert_eq!(s3_crls(&moto).len(), 5);
}

#[test]
fn sync_watch_reissues_the_crl_before_it_expires_and_delivers_it() {
    // 4 s CRLs: the watcher re-issues one once less than 2 s are left.
    let Some((moto, st)) = synced_gate("[ca]\ncrl_validity = \"4s\"") else {
        return;
    };
    let _watching = Watching::start(&st);
    let start = std::time::Instant::now();
    while s3_crls(&moto).len() < 2 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "no re-issued CRL reached S3 within 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = st.json(&["gate", "status"]);
    assert!(
        status["wants"]["crl_number"].as_u64().unwrap() >= 2,
        "{status}"
    );
}

/// `gate status` reads each `[[gate.listeners]]` entry (DescribeListeners
/// on moto, whose listeners have no mutual TLS: mode off) beside its trust
/// store (which moto cannot read: the row is stale and the command exits 1).
#[test]
fn status_shows_the_listeners_and_their_trust_store() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let Some(arn) = moto.boto3(
        "ec2 = boto3.client('ec2', **kw)\n\
         vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']\n\
         a = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24', AvailabilityZone='us-east-1a')['Subnet']['SubnetId']\n\
         b = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.2.0/24', AvailabilityZone='us-east-1b')['Subnet']['SubnetId']\n\
         elb = boto3.client('elbv2', **kw)\n\
         lb = elb.create_load_balancer(Name='edge', Subnets=[a, b])['LoadBalancers'][0]['LoadBalancerArn']\n\
         tg = elb.create_target_group(Name='app', Protocol='HTTP', Port=80, VpcId=vpc)['TargetGroups'][0]['TargetGroupArn']\n\
         l = elb.create_listener(LoadBalancerArn=lb, Protocol='HTTP', Port=80, DefaultActions=[{'Type': 'forward', 'TargetGroupArn': tg}])\n\
         sys.stdout.write(l['Listeners'][0]['ListenerArn'])",
    ) else {
        return;
    };
    moto.boto3("boto3.client('s3', **kw).create_bucket(Bucket='trust')")
        .unwrap();
    let mut st = State::new(&format!(
        "[backend]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
         [gate]\nbucket = \"trust\"\ntrust_stores = [\"eos-ca\"]\n\
         [[gate.listeners]]\narn = \"{arn}\"\nspaces = [\"acme\"]\n",
        moto.endpoint()
    ));
    st.env = moto.env();
    st.ok(&["ca", "init", "--env", "dev"]);
    let o = st.run(&["--json", "gate", "status"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let status: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let l = &status["listeners"][0];
    assert_eq!(l["arn"], arn.as_str(), "{status}");
    assert_eq!(l["mode"], "off");
    assert_eq!(l["exists"], true);
    assert_eq!(l["spaces"], serde_json::json!(["acme"]));
    assert_eq!(l["trust_store"], "eos-ca");
    assert_eq!(l["ca_crl_number"], 1);
    assert_eq!(l["stale"], true);
    assert!(
        l["stale_reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot read it now"),
        "{l}"
    );
    let human = st.run(&["gate", "status"]);
    assert!(
        human
            .stdout
            .contains(&format!("listener {arn}: off (acme)")),
        "{}\n{}",
        human.stdout,
        human.stderr
    );
}
