//! The certificate gate's S3 objects and API Gateway v2 domains against a
//! private moto server, read back with boto3 (an independent client).
//! moto 5 implements S3 and CreateDomainName/GetDomainName with mutual TLS,
//! but not UpdateDomainName nor ELBv2 trust stores: those are checked with
//! the replay client (`gate_replay.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use eos_aws::gate::AwsGate;
use eos_aws::moto::{MotoServer, block_on};
use eos_ca::{CaEnv, LocalCa};
use eos_policy::gate::{
    CrlFile, GateBackend, GateError, ObjectKind, PublishedMaterial, TrustMaterial, check_material,
    object_key, publish_objects, sync_domain,
};

fn material() -> TrustMaterial {
    let now = SystemTime::now();
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400), now).unwrap();
    let crl = ca.crl(1, &[], now, Duration::from_secs(3600)).unwrap();
    check_material(
        ca.trust_bundle().unwrap().as_bytes(),
        Some(CrlFile {
            number: 1,
            this_update: eos_ca::rfc3339(now),
            next_update: eos_ca::rfc3339(now + Duration::from_secs(3600)),
            pem: eos_ca::crl_pem(&crl).unwrap().into_bytes(),
        }),
    )
    .unwrap()
}

struct Published {
    moto: MotoServer,
    material: TrustMaterial,
    gate: AwsGate,
    published: PublishedMaterial,
}

/// moto with bucket `trust`, and a fresh CA's bundle and CRL published to
/// it under `eos-sec/`.
fn published() -> Option<Published> {
    let moto = MotoServer::start()?;
    moto.boto3("boto3.client('s3', **kw).create_bucket(Bucket='trust')")?;
    let material = material();
    let gate = block_on(AwsGate::connect(&moto.aws_options(), "trust")).unwrap();
    let published = block_on(publish_objects(&gate, "eos-sec/", &material)).unwrap();
    Some(Published {
        moto,
        material,
        gate,
        published,
    })
}

#[test]
fn bundle_and_crl_land_under_their_content_addresses_and_are_never_overwritten() {
    let Some(Published {
        moto,
        material,
        gate,
        published,
    }) = published()
    else {
        return;
    };
    let bundle_key = object_key("eos-sec/", ObjectKind::Bundle, material.bundle());
    assert_eq!(published.bundle.key, bundle_key);
    let (crl_object, crl, _) = published.crl.clone().unwrap();
    assert_eq!(crl.number, 1);

    // boto3 reads back exactly what the CA made.
    let listing = moto.boto3(
        "s3 = boto3.client('s3', **kw)\n\
         print(json.dumps(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='trust')['Contents'])))\n\
",
    )
    .unwrap();
    let keys: Vec<String> = serde_json::from_str(&listing).unwrap();
    let mut expected = vec![bundle_key.clone(), crl_object.key.clone()];
    expected.sort();
    assert_eq!(keys, expected);
    let body = moto.boto3(
        &format!(
            "sys.stdout.write(boto3.client('s3', **kw).get_object(Bucket='trust', Key='{bundle_key}')['Body'].read().decode())"
        ),
    )
    .unwrap();
    assert_eq!(body.as_bytes(), material.bundle());
    let crl_body = moto.boto3(
        &format!(
            "sys.stdout.write(boto3.client('s3', **kw).get_object(Bucket='trust', Key='{}')['Body'].read().decode())",
            crl_object.key
        ),
    )
    .unwrap();
    assert_eq!(
        crl_body.as_bytes(),
        material.crl().unwrap().0.pem.as_slice()
    );

    // Publishing again changes nothing and returns the same objects.
    let again = block_on(publish_objects(&gate, "eos-sec/", &material)).unwrap();
    assert_eq!(again, published);

    // A content address that holds another body is refused, not replaced.
    let other = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400), SystemTime::now())
        .unwrap()
        .trust_bundle()
        .unwrap();
    let other_key = object_key("eos-sec/", ObjectKind::Bundle, other.as_bytes());
    moto.boto3(&format!(
        "boto3.client('s3', **kw).put_object(Bucket='trust', Key='{other_key}', Body=b'squatter')"
    ))
    .unwrap();
    let err = block_on(gate.put_object(&other_key, other.as_bytes())).unwrap_err();
    assert!(matches!(err, GateError::ReadBack { .. }), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    let kept = moto.boto3(
        &format!(
            "sys.stdout.write(boto3.client('s3', **kw).get_object(Bucket='trust', Key='{other_key}')['Body'].read().decode())"
        ),
    )
    .unwrap();
    assert_eq!(kept, "squatter");
}

#[test]
fn an_api_gateway_domain_on_the_bundle_reads_back_in_sync() {
    let Some(Published {
        moto,
        material: _,
        gate,
        published,
    }) = published()
    else {
        return;
    };
    let uri = published.bundle.uri();
    moto.boto3(
        &format!(
            "boto3.client('apigatewayv2', **kw).create_domain_name(DomainName='api.acme.example', \
             DomainNameConfigurations=[{{'CertificateArn': 'arn:aws:acm:us-east-1:111122223333:certificate/x', 'EndpointType': 'REGIONAL'}}], \
             MutualTlsAuthentication={{'TruststoreUri': '{uri}'}})"
        ),
    )
    .unwrap();
    let read = block_on(gate.domain("api.acme.example")).unwrap().unwrap();
    assert_eq!(read.truststore_uri.as_deref(), Some(uri.as_str()));
    let (record, steps) = block_on(sync_domain(&gate, "api.acme.example", &published)).unwrap();
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(record.bundle, published.bundle);

    assert_eq!(block_on(gate.domain("nowhere.example")).unwrap(), None);
    let err = block_on(sync_domain(&gate, "nowhere.example", &published)).unwrap_err();
    assert!(matches!(err, GateError::Missing { .. }), "{err}");
    assert!(err.is_bad_input());
}
