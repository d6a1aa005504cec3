//! ELBv2 trust stores and API Gateway's UpdateDomainName, which moto does
//! not implement, checked with the smithy runtime's replay client: the
//! responses are shaped after the ELBv2 API Reference (awsQuery XML:
//! CreateTrustStore, DescribeTrustStores, DescribeTrustStoreRevocations,
//! AddTrustStoreRevocations, RemoveTrustStoreRevocations, the
//! TrustStoreNotFound error) and the API Gateway v2 reference (JSON), and
//! the tests assert what eos-sec sends: the actions, their order and their
//! parameters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_elasticloadbalancingv2::config::http::{HttpRequest, HttpResponse};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use eos_aws::gate::AwsGate;
use eos_ca::{CaEnv, LocalCa, RevocationReason, RevokedEntry, Serial};
use eos_policy::gate::{
    CrlFile, GateBackend, GateError, GateStep, ObjectRef, PublishedMaterial, TrustMaterial,
    check_material, sync_domain, sync_trust_store,
};

#[path = "gate_replay/listeners.rs"]
mod listeners;

const NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
const ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:111122223333:truststore/eos-ca/3ym756xh7yj";

fn response(status: u16, body: String) -> ReplayEvent {
    ReplayEvent::new(
        HttpRequest::new(SdkBody::empty()),
        HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body)),
    )
}

/// An awsQuery success response: `<{Action}Response><{Action}Result>…`.
fn ok(action: &str, result: &str) -> ReplayEvent {
    response(
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result>\
             <ResponseMetadata><RequestId>0a1b2c3d-0000-4000-8000-000000000000</RequestId></ResponseMetadata>\
             </{action}Response>"
        ),
    )
}

fn not_found() -> ReplayEvent {
    response(
        400,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>TrustStoreNotFound</Code>\
             <Message>One or more trust stores not found</Message></Error>\
             <RequestId>0a1b2c3d-0000-4000-8000-000000000001</RequestId></ErrorResponse>"
        ),
    )
}

fn trust_store(status: &str, certificates: usize, revoked: u64) -> String {
    format!(
        "<TrustStores><member><Name>eos-ca</Name><TrustStoreArn>{ARN}</TrustStoreArn>\
         <Status>{status}</Status><NumberOfCaCertificates>{certificates}</NumberOfCaCertificates>\
         <TotalRevokedEntries>{revoked}</TotalRevokedEntries></member></TrustStores>"
    )
}

fn revocations(list: &[(i64, u64)]) -> String {
    let members: String = list
        .iter()
        .map(|(id, n)| {
            format!(
                "<member><TrustStoreArn>{ARN}</TrustStoreArn><RevocationId>{id}</RevocationId>\
                 <RevocationType>CRL</RevocationType><NumberOfRevokedEntries>{n}</NumberOfRevokedEntries></member>"
            )
        })
        .collect();
    format!("<TrustStoreRevocations>{members}</TrustStoreRevocations>")
}

fn gate(events: Vec<ReplayEvent>) -> (AwsGate, StaticReplayClient) {
    let client = StaticReplayClient::new(events);
    let sdk = aws_config::SdkConfig::builder()
        .http_client(client.clone())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"),
            ),
        )
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    (
        AwsGate::from_sdk_config(&sdk, "trust-bucket", false).unwrap(),
        client,
    )
}

/// Percent-decoding of an `application/x-www-form-urlencoded` value.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The query parameters of every request sent, in order.
fn sent(client: &StaticReplayClient) -> Vec<BTreeMap<String, String>> {
    client
        .actual_requests()
        .map(|r| {
            let body = std::str::from_utf8(r.body().bytes().unwrap()).unwrap();
            body.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .collect()
}

fn actions(params: &[BTreeMap<String, String>]) -> Vec<&str> {
    params.iter().map(|p| p["Action"].as_str()).collect()
}

fn material(revoked: usize) -> (TrustMaterial, PublishedMaterial) {
    let now = SystemTime::now();
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400), now).unwrap();
    let entries: Vec<RevokedEntry> = (0..revoked)
        .map(|i| RevokedEntry {
            serial: Serial::from_hex(&format!("{:x}", 0x1000 + i)).unwrap(),
            revoked_at: now,
            reason: RevocationReason::KeyCompromise,
        })
        .collect();
    let crl = ca.crl(7, &entries, now, Duration::from_secs(3600)).unwrap();
    let pem = eos_ca::crl_pem(&crl).unwrap();
    let bundle = ca.trust_bundle().unwrap();
    let material = check_material(
        bundle.as_bytes(),
        Some(CrlFile {
            number: 7,
            this_update: eos_ca::rfc3339(now),
            next_update: eos_ca::rfc3339(now + Duration::from_secs(3600)),
            pem: pem.clone().into_bytes(),
        }),
    )
    .unwrap();
    let object = |kind: &str, body: &[u8]| ObjectRef {
        bucket: "trust-bucket".to_owned(),
        key: format!("eos-sec/{kind}/{}.pem", eos_policy::gate::sha256_hex(body)),
        version: None,
        sha256: eos_policy::gate::sha256_hex(body),
    };
    let (file, n) = material.crl().unwrap();
    let published = PublishedMaterial {
        bundle: object("bundle", bundle.as_bytes()),
        crl: Some((object("crl", pem.as_bytes()), file.clone(), n)),
    };
    (material, published)
}

#[tokio::test]
async fn a_missing_trust_store_is_created_then_its_crl_added_and_read_back() {
    let (material, published) = material(2);
    let (gate, client) = gate(vec![
        not_found(),
        ok("CreateTrustStore", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[])),
        ok("AddTrustStoreRevocations", &revocations(&[(1, 2)])),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 2)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(1, 2)])),
    ]);
    let (record, steps) = sync_trust_store(&gate, "eos-ca", &published, &material, None)
        .await
        .unwrap();
    let sent = sent(&client);
    assert_eq!(
        actions(&sent),
        [
            "DescribeTrustStores",
            "CreateTrustStore",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations",
            "AddTrustStoreRevocations",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations",
        ]
    );
    assert_eq!(sent[0]["Names.member.1"], "eos-ca");
    assert_eq!(sent[1]["Name"], "eos-ca");
    assert_eq!(sent[1]["CaCertificatesBundleS3Bucket"], "trust-bucket");
    assert_eq!(sent[1]["CaCertificatesBundleS3Key"], published.bundle.key);
    assert!(!sent[1].contains_key("CaCertificatesBundleS3ObjectVersion"));
    assert_eq!(sent[3]["TrustStoreArn"], ARN);
    let crl_key = &published.crl.as_ref().unwrap().0.key;
    let add = &sent[4];
    assert_eq!(add["TrustStoreArn"], ARN);
    assert_eq!(add["RevocationContents.member.1.S3Bucket"], "trust-bucket");
    assert_eq!(&add["RevocationContents.member.1.S3Key"], crl_key);
    assert_eq!(add["RevocationContents.member.1.RevocationType"], "CRL");
    assert_eq!(record.arn, ARN);
    let crl = record.crl.unwrap();
    assert_eq!((crl.number, crl.revocation_id, crl.entries), (7, 1, 2));
    assert_eq!(
        steps,
        [
            GateStep::CreateTrustStore {
                bundle: published.bundle.key.clone()
            },
            GateStep::AddRevocation {
                crl_number: 7,
                revocation_id: 1
            },
        ]
    );
}

#[tokio::test]
async fn a_new_crl_is_added_before_the_superseded_one_is_removed() {
    let (material, published) = material(3);
    // What eos-sec recorded last time: the same bundle, CRL 6 as id 4.
    let mut previous_crl_object = published.crl.as_ref().unwrap().0.clone();
    previous_crl_object.key = "eos-sec/crl/old.pem".to_owned();
    previous_crl_object.sha256 = "old".to_owned();
    let previous = eos_policy::gate::TrustStoreRecord {
        arn: ARN.to_owned(),
        bundle: published.bundle.clone(),
        crl: Some(eos_policy::gate::CrlRecord {
            number: 6,
            this_update: "2026-01-01T00:00:00Z".to_owned(),
            next_update: "2026-01-02T00:00:00Z".to_owned(),
            object: previous_crl_object,
            revocation_id: 4,
            entries: 1,
        }),
    };
    let (gate, client) = gate(vec![
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 1)),
        // An orphan (5, added by a run that died before recording it) is
        // superseded too.
        ok(
            "DescribeTrustStoreRevocations",
            &revocations(&[(4, 1), (5, 3)]),
        ),
        ok("AddTrustStoreRevocations", &revocations(&[(6, 3)])),
        ok("RemoveTrustStoreRevocations", ""),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 3)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(6, 3)])),
    ]);
    let (record, steps) = sync_trust_store(&gate, "eos-ca", &published, &material, Some(&previous))
        .await
        .unwrap();
    let sent = sent(&client);
    assert_eq!(
        actions(&sent),
        [
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations",
            "AddTrustStoreRevocations",
            "RemoveTrustStoreRevocations",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations",
        ],
        "no ModifyTrustStore for an unchanged bundle; add before remove"
    );
    let remove = &sent[3];
    assert_eq!(remove["TrustStoreArn"], ARN);
    assert_eq!(remove["RevocationIds.member.1"], "4");
    assert_eq!(remove["RevocationIds.member.2"], "5");
    assert!(!remove.contains_key("RevocationIds.member.3"));
    assert_eq!(record.crl.unwrap().revocation_id, 6);
    assert_eq!(steps.len(), 2);
}

#[tokio::test]
async fn an_unchanged_trust_store_gets_reads_only() {
    let (material, published) = material(0);
    let (gate, client) = gate(vec![
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(9, 0)])),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(9, 0)])),
    ]);
    let (crl_object, file, _) = published.crl.clone().unwrap();
    let previous = eos_policy::gate::TrustStoreRecord {
        arn: ARN.to_owned(),
        bundle: published.bundle.clone(),
        crl: Some(eos_policy::gate::CrlRecord {
            number: file.number,
            this_update: file.this_update.clone(),
            next_update: file.next_update.clone(),
            object: crl_object,
            revocation_id: 9,
            entries: 0,
        }),
    };
    let (_, steps) = sync_trust_store(&gate, "eos-ca", &published, &material, Some(&previous))
        .await
        .unwrap();
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(
        actions(&sent(&client)),
        [
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations"
        ]
    );
}

#[tokio::test]
async fn a_changed_bundle_is_modified_and_a_bad_read_back_is_an_error() {
    let (material, published) = material(1);
    let (gate, client) = gate(vec![
        ok("DescribeTrustStores", &trust_store("ACTIVE", 2, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[])),
        ok("ModifyTrustStore", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[])),
        ok("AddTrustStoreRevocations", &revocations(&[(2, 1)])),
        // The read-back still shows no revocation file.
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[])),
    ]);
    let err = sync_trust_store(&gate, "eos-ca", &published, &material, None)
        .await
        .unwrap_err();
    assert!(matches!(err, GateError::ReadBack { .. }), "{err}");
    assert!(err.to_string().contains("revocations none"), "{err}");
    let sent = sent(&client);
    assert_eq!(sent[2]["Action"], "ModifyTrustStore");
    assert_eq!(sent[2]["TrustStoreArn"], ARN);
    assert_eq!(sent[2]["CaCertificatesBundleS3Key"], published.bundle.key);
}

#[tokio::test]
async fn an_api_error_names_the_call_and_code() {
    let (material, published) = material(0);
    let (gate, _client) = gate(vec![
        not_found(),
        response(
            400,
            format!(
                "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>InvalidCaCertificatesBundle</Code>\
                 <Message>The bundle is not valid</Message></Error><RequestId>x</RequestId></ErrorResponse>"
            ),
        ),
    ]);
    let err = sync_trust_store(&gate, "eos-ca", &published, &material, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "CreateTrustStore eos-ca: InvalidCaCertificatesBundle: The bundle is not valid"
    );
}

fn throttled() -> ReplayEvent {
    response(
        400,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>ThrottlingException</Code>\
             <Message>Rate exceeded</Message></Error><RequestId>t</RequestId></ErrorResponse>"
        ),
    )
}

/// "Request throttling for the Elastic Load Balancing API": a throttled
/// call is retried with backoff and then succeeds.
#[tokio::test]
async fn a_throttled_call_is_retried() {
    let (gate, client) = gate(vec![
        throttled(),
        throttled(),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[])),
    ]);
    let read = gate.trust_store("eos-ca").await.unwrap().unwrap();
    assert_eq!(read.arn, ARN);
    assert_eq!(
        actions(&sent(&client)),
        [
            "DescribeTrustStores",
            "DescribeTrustStores",
            "DescribeTrustStores",
            "DescribeTrustStoreRevocations"
        ]
    );
}

/// Throttled on every attempt: the error says so, with the attempts made.
#[tokio::test]
async fn throttling_that_does_not_end_is_reported() {
    let (material, published) = material(0);
    let (gate, client) = gate((0..5).map(|_| throttled()).collect());
    let err = sync_trust_store(&gate, "eos-ca", &published, &material, None)
        .await
        .unwrap_err();
    assert_eq!(sent(&client).len(), 5);
    let text = err.to_string();
    assert!(
        text.starts_with(
            "DescribeTrustStores eos-ca: throttled by ELBv2 after 5 attempts (ThrottlingException: Rate exceeded)"
        ),
        "{text}"
    );
}

/// Mutating calls are paced (eos_aws::gate::elb_limits): a new CRL's add
/// and the superseded one's removal are at least MUTATE_INTERVAL apart.
#[tokio::test]
async fn mutating_calls_are_paced() {
    let (material, published) = material(1);
    let (gate, client) = gate(vec![
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(3, 0)])),
        ok("ModifyTrustStore", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 0)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(3, 0)])),
        ok("AddTrustStoreRevocations", &revocations(&[(4, 1)])),
        ok("RemoveTrustStoreRevocations", ""),
        ok("DescribeTrustStores", &trust_store("ACTIVE", 1, 1)),
        ok("DescribeTrustStoreRevocations", &revocations(&[(4, 1)])),
    ]);
    let started = std::time::Instant::now();
    sync_trust_store(&gate, "eos-ca", &published, &material, None)
        .await
        .unwrap();
    assert_eq!(sent(&client).len(), 9);
    // Three mutating calls: two intervals between them at least.
    assert!(
        started.elapsed() >= eos_aws::gate::elb_limits::MUTATE_INTERVAL * 2,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stale_api_gateway_domain_is_updated_to_the_bundle_uri() {
    let (_, published) = material(0);
    let domain = |uri: &str| {
        response(
            200,
            format!(
                r#"{{"domainName":"api.acme.example","domainNameConfigurations":[],"mutualTlsAuthentication":{{"truststoreUri":"{uri}","truststoreWarnings":[]}}}}"#
            ),
        )
    };
    let uri = published.bundle.uri();
    let (gate, client) = gate(vec![
        domain("s3://trust-bucket/old.pem"),
        domain(&uri),
        domain(&uri),
    ]);
    let (record, steps) = sync_domain(&gate, "api.acme.example", &published)
        .await
        .unwrap();
    assert_eq!(record.bundle, published.bundle);
    assert_eq!(steps, [GateStep::SetDomainTruststore { uri: uri.clone() }]);
    let requests: Vec<_> = client.actual_requests().collect();
    let methods: Vec<&str> = requests.iter().map(|r| r.method()).collect();
    assert_eq!(methods, ["GET", "PATCH", "GET"]);
    assert!(
        requests[1]
            .uri()
            .ends_with("/v2/domainnames/api.acme.example")
    );
    let body: serde_json::Value =
        serde_json::from_slice(requests[1].body().bytes().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "mutualTlsAuthentication": { "truststoreUri": uri } })
    );
    // GateBackend is what eos-sec's CLI drives.
    assert_eq!(gate.gate_backend_id(), "aws:us-east-1");
}
