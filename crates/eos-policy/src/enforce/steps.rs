//! The writes from one owned part of the Web ACL to another, in the order
//! that never blocks legitimate traffic while WAF propagates a change.

use serde::{Deserialize, Serialize};

use crate::acl::OwnedAcl;

/// What one write changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Rules change, the default action stays.
    Rules,
    /// The default action becomes BLOCK (rules already in place).
    DefaultBlock,
    /// The default action becomes ALLOW (before any rule is removed).
    DefaultAllow,
}

impl StepKind {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Rules => "rules",
            StepKind::DefaultBlock => "default-block",
            StepKind::DefaultAllow => "default-allow",
        }
    }
}

/// One write: the whole owned part it leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What changes.
    pub kind: StepKind,
    /// The owned part after the write.
    pub target: OwnedAcl,
}

/// The writes from `current` to `target` in the safe order: rules before
/// a default BLOCK, a default ALLOW before rules are taken away. Empty when
/// there is nothing to change.
pub fn ordered_steps(current: &OwnedAcl, target: &OwnedAcl) -> Vec<Step> {
    if current == target {
        return Vec::new();
    }
    let step = |kind, target: &OwnedAcl| Step {
        kind,
        target: target.clone(),
    };
    match (
        current.default_action.is_block(),
        target.default_action.is_block(),
    ) {
        (false, true) => {
            let rules_first = target.with_default(current.default_action);
            let mut v = Vec::new();
            if rules_first != *current {
                v.push(step(StepKind::Rules, &rules_first));
            }
            v.push(step(StepKind::DefaultBlock, target));
            v
        }
        (true, false) => {
            let allow_first = current.with_default(target.default_action);
            let mut v = vec![step(StepKind::DefaultAllow, &allow_first)];
            if allow_first != *target {
                v.push(step(StepKind::Rules, target));
            }
            v
        }
        _ => vec![step(StepKind::Rules, target)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::DefaultAction;

    fn owned(block: bool, rules: &[&str]) -> OwnedAcl {
        let acl = crate::waf::WebAcl {
            name: "t".into(),
            description: None,
            default_action: if block {
                DefaultAction::block()
            } else {
                DefaultAction::allow()
            },
            rules: rules
                .iter()
                .map(|n| crate::waf::Rule {
                    name: (*n).to_owned(),
                    priority: 0,
                    statement: crate::waf::Statement::ByteMatchStatement(crate::waf::ByteMatch {
                        search_string: "x".into(),
                        field_to_match: crate::waf::FieldToMatch::UriPath(crate::waf::Empty {}),
                        text_transformations: vec![],
                        positional_constraint: "EXACTLY".into(),
                    }),
                    action: None,
                    override_action: None,
                    rule_labels: vec![],
                    visibility_config: crate::waf::VisibilityConfig::named(n),
                })
                .collect(),
            visibility_config: crate::waf::VisibilityConfig::named("t"),
        };
        OwnedAcl::of(&acl)
    }

    fn kinds(steps: &[Step]) -> Vec<StepKind> {
        steps.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn forward_adds_rules_before_default_block() {
        let count = owned(false, &["eos-a-ip-count"]);
        let enforced = owned(true, &["eos-a-ip-allow", "eos-b-allow"]);
        let steps = ordered_steps(&count, &enforced);
        assert_eq!(kinds(&steps), [StepKind::Rules, StepKind::DefaultBlock]);
        assert!(!steps[0].target.default_action.is_block());
        assert_eq!(steps[0].target.rules, enforced.rules);
        assert_eq!(steps[1].target, enforced);
    }

    #[test]
    fn backward_allows_before_removing_rules() {
        let count = owned(false, &["eos-a-ip-count"]);
        let enforced = owned(true, &["eos-a-ip-allow", "eos-b-allow"]);
        let steps = ordered_steps(&enforced, &count);
        assert_eq!(kinds(&steps), [StepKind::DefaultAllow, StepKind::Rules]);
        assert_eq!(steps[0].target.rules, enforced.rules);
        assert_eq!(steps[1].target, count);
        assert!(ordered_steps(&count, &count).is_empty());
        assert_eq!(
            kinds(&ordered_steps(&owned(false, &[]), &count)),
            [StepKind::Rules]
        );
    }
}
