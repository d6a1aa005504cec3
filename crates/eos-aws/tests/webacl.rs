//! Enforce → rollback against a private moto server: the Web ACL read back
//! after each step, a rule eos-sec does not own and custom response bodies
//! preserved, the rollback restoring the snapshot exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_wafv2::types as sdk;
use eos_aws::moto::MotoServer;
use eos_aws::wafv2::{Scope, WafBackend};
use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet};
use eos_plan::{BackendError, IpSetBackend, IpSetName, LockToken, NewIpSet};
use eos_policy::enforce::{EnforceOptions, RollbackOptions, StepKind, enforce, rollback};
use eos_policy::{OwnedAcl, Policy, Stage, WebAclBackend};
use eos_store::Store;

const POLICY: &str = r#"
[web_acl]
name = "eos-restricted"
[routing]
by = "host-label"
domain = "entityos.cloud"
[ip_gate]
forwarded_ip_header = "X-Forwarded-For"
forwarded_ip_position = "last"
[[rate]]
name = "per-ip"
limit = 2000
[spaces.acme]
mode = "ip"
admin_ips = ["198.51.100.10"]
"#;

fn acme() -> SpaceId {
    SpaceId::new("acme").unwrap()
}

fn vis(name: &str) -> sdk::VisibilityConfig {
    sdk::VisibilityConfig::builder()
        .sampled_requests_enabled(true)
        .cloud_watch_metrics_enabled(true)
        .metric_name(name)
        .build()
        .unwrap()
}

/// The platform team's rule, which eos-sec must never touch.
fn foreign_rule() -> sdk::Rule {
    sdk::Rule::builder()
        .name("corp-geo-block")
        .priority(5)
        .statement(
            sdk::Statement::builder()
                .geo_match_statement(
                    sdk::GeoMatchStatement::builder()
                        .country_codes(sdk::CountryCode::Kp)
                        .build(),
                )
                .build(),
        )
        .action(
            sdk::RuleAction::builder()
                .block(
                    sdk::BlockAction::builder()
                        .custom_response(
                            sdk::CustomResponse::builder()
                                .response_code(403)
                                .custom_response_body_key("blocked")
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build(),
        )
        .visibility_config(vis("corp-geo-block"))
        .build()
        .unwrap()
}

async fn get(client: &aws_sdk_wafv2::Client, name: &str) -> sdk::WebAcl {
    let list = client
        .list_web_acls()
        .scope(sdk::Scope::Regional)
        .send()
        .await
        .unwrap();
    let id = list
        .web_acls()
        .iter()
        .find(|a| a.name() == Some(name))
        .and_then(|a| a.id())
        .unwrap()
        .to_owned();
    client
        .get_web_acl()
        .name(name)
        .id(id)
        .scope(sdk::Scope::Regional)
        .send()
        .await
        .unwrap()
        .web_acl()
        .cloned()
        .unwrap()
}

fn names(acl: &sdk::WebAcl) -> Vec<&str> {
    let mut rules: Vec<&sdk::Rule> = acl.rules().iter().collect();
    rules.sort_by_key(|r| r.priority());
    rules.iter().map(|r| r.name()).collect()
}

#[tokio::test]
async fn enforce_and_rollback_round_trip_against_moto() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let backend = WafBackend::connect(&moto.aws_options(), Scope::Regional)
        .await
        .unwrap();
    let client = aws_sdk_wafv2::Client::new(&eos_aws::sdk_config(&moto.aws_options()).await);
    for (family, nets) in [
        (Family::V4, vec!["198.51.100.10/32", "198.51.100.11/32"]),
        (Family::V6, vec!["2001:db8:10::/48"]),
    ] {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        backend
            .create(&NewIpSet::staged(&IpSetName::staged(&acme(), family), nets))
            .await
            .unwrap();
    }
    let body = sdk::CustomResponseBody::builder()
        .content_type(sdk::ResponseContentType::TextPlain)
        .content("blocked by policy")
        .build()
        .unwrap();
    client
        .create_web_acl()
        .name("eos-restricted")
        .scope(sdk::Scope::Regional)
        .description("shared with the platform team")
        .default_action(
            sdk::DefaultAction::builder()
                .allow(sdk::AllowAction::builder().build())
                .build(),
        )
        .rules(foreign_rule())
        .visibility_config(vis("eos-restricted"))
        .custom_response_bodies("blocked", body)
        .token_domains("entityos.cloud")
        .send()
        .await
        .unwrap();
    let original = get(&client, "eos-restricted").await;

    let policy = Policy::from_toml(POLICY, "policy.toml").unwrap();
    let mut store = Store::open_in_memory().unwrap();
    let opts = EnforceOptions {
        policy: &policy,
        space: acme(),
        target: None,
        operator_ips: vec!["198.51.100.11".parse().unwrap()],
        simulation: None,
        force: false,
        actor: "test".to_owned(),
    };
    for to in [Stage::Staged, Stage::Count] {
        let r = enforce(&backend, &backend, &mut store, &opts)
            .await
            .unwrap();
        assert_eq!(r.to, to);
    }
    let count = get(&client, "eos-restricted").await;
    assert_eq!(
        names(&count),
        ["corp-geo-block", "eos-rate-per-ip", "eos-acme-ip-count"]
    );
    let count_doc = backend.read_acl("eos-restricted").await.unwrap().unwrap();

    let r = enforce(&backend, &backend, &mut store, &opts)
        .await
        .unwrap();
    let kinds: Vec<StepKind> = r.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StepKind::Rules, StepKind::DefaultBlock]);
    let enforced = get(&client, "eos-restricted").await;
    assert!(enforced.default_action().unwrap().block().is_some());
    assert_eq!(
        names(&enforced),
        ["corp-geo-block", "eos-rate-per-ip", "eos-acme-ip-allow"]
    );
    // The rule eos-sec did not write, verbatim, and the fields it does not own.
    assert_eq!(enforced.rules()[0], original.rules()[0]);
    assert_eq!(
        enforced.custom_response_bodies(),
        original.custom_response_bodies()
    );
    assert_eq!(enforced.token_domains(), original.token_domains());
    assert_eq!(enforced.description(), original.description());
    // The ALLOW rule references both sets, by the position the proxy writes.
    let allow = enforced
        .rules()
        .iter()
        .find(|r| r.name() == "eos-acme-ip-allow")
        .unwrap();
    let and = allow.statement().unwrap().and_statement().unwrap();
    let or = and.statements()[1].or_statement().unwrap();
    let v4 = backend.ip_set_arn("eos-acme-v4").await.unwrap().unwrap();
    let first = or.statements()[0].ip_set_reference_statement().unwrap();
    assert_eq!(first.arn(), v4);
    let fwd = first.ip_set_forwarded_ip_config().unwrap();
    assert_eq!(fwd.position(), &sdk::ForwardedIpPosition::Last);
    assert_eq!(fwd.fallback_behavior(), &sdk::FallbackBehavior::NoMatch);

    let rb_opts = RollbackOptions {
        policy: &policy,
        space: acme(),
        to: None,
        actor: "test".to_owned(),
    };
    let rb = rollback(&backend, &backend, &mut store, &rb_opts)
        .await
        .unwrap();
    let kinds: Vec<StepKind> = rb.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StepKind::DefaultAllow, StepKind::Rules]);
    let back = backend.read_acl("eos-restricted").await.unwrap().unwrap();
    assert_eq!(back.document, count_doc.document, "the snapshot, exactly");
    assert_ne!(back.lock, count_doc.lock);
    let again = rollback(&backend, &backend, &mut store, &rb_opts)
        .await
        .unwrap();
    assert!(again.was_noop());

    // A write with a stale token is refused, never merged.
    let stale = backend
        .write_acl("eos-restricted", &count_doc.owned, &count_doc.lock)
        .await;
    assert!(
        matches!(stale, Err(BackendError::StaleLock { .. })),
        "{stale:?}"
    );
    let foreign_owned = OwnedAcl {
        default_action: count_doc.owned.default_action,
        rules: vec![{
            let mut r = count_doc.owned.rules[0].clone();
            r.name = "not-ours".to_owned();
            r
        }],
    };
    let refused = backend
        .write_acl(
            "eos-restricted",
            &foreign_owned,
            &LockToken(back.lock.0.clone()),
        )
        .await;
    assert!(
        matches!(refused, Err(BackendError::Invalid { .. })),
        "{refused:?}"
    );
}
