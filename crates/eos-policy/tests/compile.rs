//! Compile the shipped example policy at each stage: snapshots of the Web
//! ACL JSON (reviewed like code), and the properties that make it safe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use eos_identity::SpaceId;
use eos_policy::compile::{ListenerMode, rule_names};
use eos_policy::waf::{RuleAction, Statement};
use eos_policy::{Policy, SetArns, Stage, compile};

fn example() -> Policy {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/policy.toml");
    Policy::from_file(&p).unwrap()
}

fn stages(acme: Stage, globex: Stage) -> BTreeMap<SpaceId, Stage> {
    [("acme", acme), ("globex", globex)]
        .into_iter()
        .map(|(s, st)| (SpaceId::new(s).unwrap(), st))
        .collect()
}

fn arns() -> SetArns {
    let mut a = SetArns::default();
    for n in [
        "eos-acme-v4",
        "eos-acme-v6",
        "eos-globex-v4",
        "eos-globex-v6",
    ] {
        a.known.insert(
            n.to_owned(),
            format!("arn:aws:wafv2:eu-west-1:123456789012:regional/ipset/{n}/0000"),
        );
    }
    a
}

#[test]
fn staged_compiles_to_standard_rules_only() {
    let c = compile(&example(), &stages(Stage::Staged, Stage::Staged), &arns()).unwrap();
    assert!(!c.web_acl.default_action.is_block());
    insta::assert_json_snapshot!("staged", c.web_acl);
}

#[test]
fn count_adds_labelled_count_rule_default_allow() {
    let c = compile(&example(), &stages(Stage::Count, Stage::Staged), &arns()).unwrap();
    assert!(!c.web_acl.default_action.is_block());
    let acme = SpaceId::new("acme").unwrap();
    let rule = c
        .web_acl
        .rules
        .iter()
        .find(|r| r.name == rule_names::ip_count(&acme))
        .unwrap();
    assert!(matches!(rule.action, Some(RuleAction::Count(_))));
    assert_eq!(rule.rule_labels[0].name, "eos:acme:ip-gate:would-block");
    insta::assert_json_snapshot!("count", c.web_acl);
}

#[test]
fn enforce_allows_sets_after_standard_rules_default_block() {
    let c = compile(&example(), &stages(Stage::Enforce, Stage::Enforce), &arns()).unwrap();
    assert!(c.web_acl.default_action.is_block());
    let acme = SpaceId::new("acme").unwrap();
    let allow = c
        .web_acl
        .rules
        .iter()
        .position(|r| r.name == rule_names::ip_allow(&acme))
        .unwrap();
    // Every managed and rate-based rule runs before the ALLOW.
    for (i, r) in c.web_acl.rules.iter().enumerate() {
        if matches!(
            r.statement,
            Statement::ManagedRuleGroupStatement(_) | Statement::RateBasedStatement(_)
        ) {
            assert!(i < allow, "{} after the ALLOW rule", r.name);
        }
    }
    // Forwarded IP: LAST only, NO_MATCH fallback.
    let json = serde_json::to_string(&c.web_acl).unwrap();
    assert!(json.contains(r#""FallbackBehavior":"NO_MATCH","Position":"LAST""#));
    assert!(!json.contains(r#""Position":"FIRST""#) && !json.contains(r#""Position":"ANY""#));
    // `either` cannot be enforced at WAF: globex is let through to the
    // application behind a passthrough listener.
    let globex = c
        .spaces
        .iter()
        .find(|s| s.space.as_str() == "globex")
        .unwrap();
    assert_eq!(globex.rules, vec!["eos-globex-allow".to_owned()]);
    assert_eq!(globex.listener, ListenerMode::Passthrough);
    insta::assert_json_snapshot!("enforce", c.web_acl);
    insta::assert_json_snapshot!("enforce_capacity_listeners", (&c.capacity, &c.listeners));
}

#[test]
fn compile_is_deterministic() {
    let p = example();
    let a = compile(&p, &stages(Stage::Enforce, Stage::Count), &arns()).unwrap();
    let b = compile(&p, &stages(Stage::Enforce, Stage::Count), &arns()).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn compiled_acl_round_trips_through_json() {
    let c = compile(&example(), &stages(Stage::Enforce, Stage::Count), &arns()).unwrap();
    let json = serde_json::to_string(&c.web_acl).unwrap();
    let back: eos_policy::waf::WebAcl = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c.web_acl);
}

#[test]
fn rejects_over_reference_limit() {
    let mut text = String::from(
        "[web_acl]\nname = \"t\"\n[routing]\nby = \"header\"\nheader = \"x-eos-space\"\n",
    );
    for i in 0..26 {
        text.push_str(&format!(
            "[spaces.s{i}]\nmode = \"ip\"\nstage = \"enforce\"\n"
        ));
    }
    let p = Policy::from_toml(&text, "t.toml").unwrap();
    let err = compile(&p, &BTreeMap::new(), &SetArns::default()).unwrap_err();
    assert!(err.to_string().contains("52 reference statements"), "{err}");
}

#[test]
fn rejects_over_wcu_limit() {
    let mut text = String::from(
        "[web_acl]\nname = \"t\"\n[routing]\nby = \"header\"\nheader = \"x-eos-space\"\n[spaces.a]\nmode = \"ip\"\n",
    );
    for i in 0..8 {
        text.push_str(&format!(
            "[[managed]]\nvendor = \"V{i}\"\nname = \"G\"\ncapacity = 700\n"
        ));
    }
    let p = Policy::from_toml(&text, "t.toml").unwrap();
    let err = compile(&p, &BTreeMap::new(), &SetArns::default()).unwrap_err();
    assert!(err.to_string().contains("5600 WCU"), "{err}");
}

/// docs/MTLS.md, "What each mode compiles to", row by row: at stage
/// `enforce` (with an IP-gated space enforcing so the default is BLOCK),
/// which rule a space gets and which listener mode it needs.
#[test]
fn mtls_table_matches_compile() {
    let text = r#"
[web_acl]
name = "t"
[routing]
by = "host-label"
domain = "entityos.cloud"
[spaces.ip]
mode = "ip"
stage = "enforce"
[spaces.cert]
mode = "cert"
stage = "enforce"
[spaces.both]
mode = "both"
stage = "enforce"
[spaces.either]
mode = "either"
stage = "enforce"
[spaces.open]
mode = "open"
stage = "enforce"
"#;
    let p = Policy::from_toml(text, "t.toml").unwrap();
    let c = compile(&p, &BTreeMap::new(), &SetArns::default()).unwrap();
    assert!(c.web_acl.default_action.is_block());
    let row = |space: &str| {
        let s = c.spaces.iter().find(|s| s.space.as_str() == space).unwrap();
        let rule = c
            .web_acl
            .rules
            .iter()
            .find(|r| s.rules.contains(&r.name))
            .unwrap();
        let gated = format!("{:?}", rule.statement).contains("IpSetReference");
        (rule.name.clone(), gated, s.listener)
    };
    assert_eq!(
        row("ip"),
        ("eos-ip-ip-allow".to_owned(), true, ListenerMode::Off)
    );
    assert_eq!(
        row("cert"),
        ("eos-cert-allow".to_owned(), false, ListenerMode::Verify)
    );
    assert_eq!(
        row("both"),
        ("eos-both-ip-allow".to_owned(), true, ListenerMode::Verify)
    );
    assert_eq!(
        row("either"),
        (
            "eos-either-allow".to_owned(),
            false,
            ListenerMode::Passthrough
        )
    );
    assert_eq!(
        row("open"),
        ("eos-open-allow".to_owned(), false, ListenerMode::Off)
    );
    // At count, certificate modes pass the chain through for the application to log.
    let mut count = BTreeMap::new();
    count.insert(SpaceId::new("both").unwrap(), Stage::Count);
    let c = compile(&p, &count, &SetArns::default()).unwrap();
    let both = c
        .spaces
        .iter()
        .find(|s| s.space.as_str() == "both")
        .unwrap();
    assert_eq!(both.listener, ListenerMode::Passthrough);
    assert_eq!(
        both.rules,
        [
            rule_names::ip_count(&both.space),
            rule_names::allow(&both.space)
        ]
    );
}
