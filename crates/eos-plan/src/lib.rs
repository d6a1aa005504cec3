//! From evidence and declared rules to staged WAF IPSets.
//!
//! - [`rules`]: Network Access Rules and the TOML, JSON and CSV files they are
//!   imported from (docs/RULES.md).
//! - [`desired_sets`]: per space and family, declared rules ∪ observations
//!   passing the evidence thresholds, as exact sets with provenance per
//!   entry, and the guards (`/0`, broad prefixes, special ranges, size).
//! - [`plan_changes`]: desired vs actual per IPSet — add, remove, unchanged,
//!   drift — and the large-change guard. A [`Plan`] is only made by
//!   planning; a plan file is read as a [`SavedPlan`], applied only through
//!   [`SavedPlan::confirm`] against a plan made now.
//! - [`IpSetBackend`]: where IPSets live (local state or AWS WAFv2), with
//!   WAF's lock-token contract; [`apply_plan`] applies through it.
//!
//! No I/O here: storage and AWS implement [`IpSetBackend`] elsewhere.

mod backend;
mod desired;
mod naming;
mod options;
mod plan;
pub mod rules;

pub use backend::{ActualSet, BackendError, IpSetBackend, LockToken, NewIpSet};
pub use desired::{
    Desired, DesiredEntry, DesiredSet, Finding, FindingCode, Severity, Source, SpaceCoverage,
    desired_sets, passes,
};
pub use naming::{IpSetName, STAGE_TAG};
pub use options::{CheckedOptions, OptionsError, PlanOptions, WAF_MAX_ENTRIES};
pub use plan::{
    ActualInput, AppliedSet, ApplyError, ApplyOutcome, MAX_ATTEMPTS, PLAN_FORMAT, Plan, PlanEntry,
    Refused, SavedPlan, SavedPlanError, SetAction, SetChange, apply_change, apply_plan,
    names_in_scope, plan_changes,
};
pub use rules::{Label, NetworkAccessRule, RuleCidr, RuleFormat, RuleImportError, parse_rules};
