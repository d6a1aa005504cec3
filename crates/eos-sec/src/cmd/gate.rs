//! `eos-sec gate publish|status`: the CA's trust bundle and current CRL in
//! S3, on the `[gate]` ALB trust stores and API Gateway domains. The rules
//! are `eos_policy::gate`'s, the calls `eos_aws::gate`'s, the record
//! `eos_store::gate`'s.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_aws::gate::AwsGate;
use eos_policy::edge::{trust_store_snapshot, trust_store_stale};
use eos_policy::gate::{
    ApiGatewayWarning, CrlFile, DomainRecord, GateBackend, GateStep, ListenerAuth, ObjectKind,
    TrustMaterial, TrustStoreRecord, api_gateway_warnings, check_material, check_trust_store_name,
    object_key, publish_objects, sha256_hex, sync_domain, sync_trust_store,
};
use eos_store::gate::{Target, TargetKind};
use serde::Serialize;

use super::aws::{AwsArgs, aws_options};
use crate::config::{CaBackendKind, GateSection};
use crate::exit::bad_input;
use crate::output::{emit, emit_json};

/// `eos-sec gate ...`
#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Publish the CA's trust bundle and current CRL to S3 (content-addressed
    /// keys) and attach them to the `[gate]` ALB trust stores and API
    /// Gateway domains, reading every change back
    Publish(GateArgs),
    /// Per trust store, listener and domain: bundle fingerprint, CRL number
    /// and age, revocation ids, listener mode, what the CA wants, stale or
    /// not, last error
    Status(GateArgs),
}

/// Arguments of both gate commands.
#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    aws: AwsArgs,
    /// Policy file, for the modes of the spaces behind `[[gate.domains]]`
    /// [default: `[policy] file`, else ./policy.toml]
    #[arg(long)]
    policy: Option<PathBuf>,
}

pub fn run(cmd: GateCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        GateCommand::Publish(a) => publish(a, ctx),
        GateCommand::Status(a) => status(a, ctx),
    }
}

/// Default key prefix inside the bucket.
const DEFAULT_PREFIX: &str = "eos-sec/";

fn bucket(conf: &GateSection) -> anyhow::Result<&str> {
    let bucket = conf.bucket.as_deref().ok_or_else(|| {
        bad_input!("[gate] bucket is not set: name the S3 bucket the CA's bundle and CRL go to")
    })?;
    if conf.trust_stores.is_empty() && conf.domains.is_empty() {
        return Err(bad_input!(
            "[gate] names no trust_stores and no [[gate.domains]]: nothing uses the published bundle"
        ));
    }
    Ok(bucket)
}

fn prefix(conf: &GateSection) -> &str {
    conf.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
}

/// The CA's trust material as it is now, and what its CRL does not list
/// yet.
pub(crate) struct CaMaterial {
    /// The bundle and CRL, checked against the ELBv2 limits.
    pub material: TrustMaterial,
    /// Serials the inventory records as revoked (and unexpired) that the
    /// CA's CRL does not list yet: AWS Private CA writes a new CRL about 30
    /// minutes after a revocation. Always empty for the local CA, whose CRL
    /// is signed in the revocation's transaction.
    pub missing: Vec<String>,
}

impl CaMaterial {
    /// The material, refused while its CRL misses a recorded revocation:
    /// an edge holding it would still admit that certificate.
    pub fn complete(self) -> anyhow::Result<TrustMaterial> {
        if self.missing.is_empty() {
            return Ok(self.material);
        }
        Err(anyhow::anyhow!("{}", self.missing_message()))
    }

    fn missing_message(&self) -> String {
        format!(
            "the CA's CRL {} does not list revoked certificate(s) {} yet (AWS Private CA writes a new CRL about 30 minutes after a revocation): until it does, the edge admits them",
            self.material
                .crl()
                .map_or_else(|| "-".to_owned(), |(c, _)| c.number.to_string()),
            self.missing.join(", ")
        )
    }
}

/// The CA's bundle and current CRL, checked against the ELBv2 limits and
/// complete ([`CaMaterial::complete`]); for callers outside the async
/// runtime (`enforce`, `rollback`).
pub(crate) fn material(
    ctx: &crate::Ctx,
    store: &eos_store::Store,
) -> anyhow::Result<TrustMaterial> {
    super::plan::runtime()?
        .block_on(current_material(ctx, store))?
        .complete()
}

/// The CA's bundle and current CRL: the local CA's latest CRL from the
/// state store (it must not have expired), or the CRL AWS Private CA wrote
/// to the S3 bucket of its `CrlConfiguration` — read, checked against the
/// CA (issuer, signature, number) and carried as it is: eos-sec never signs
/// a CRL for Private CA.
pub(crate) async fn current_material(
    ctx: &crate::Ctx,
    store: &eos_store::Store,
) -> anyhow::Result<CaMaterial> {
    match ctx.config.ca.backend {
        CaBackendKind::Local => {
            let (_subject, bundle) = super::ca::trust_bundle(ctx)?;
            let crl = local_crl(store)?;
            Ok(CaMaterial {
                material: check_material(bundle.as_bytes(), Some(crl))?,
                missing: Vec::new(),
            })
        }
        CaBackendKind::Acmpca => private_ca_material(ctx, store).await,
    }
}

async fn private_ca_material(
    ctx: &crate::Ctx,
    store: &eos_store::Store,
) -> anyhow::Result<CaMaterial> {
    let ca = super::ca::connect_private(ctx).await?;
    let location = ca.crl_location()?.clone();
    let crl = ca.current_crl().await?.ok_or_else(|| {
        anyhow::anyhow!(
            "AWS Private CA {} has not written its CRL to s3://{}/{} yet (it writes one when CRLs are enabled and after each revocation)",
            ca.arn(),
            location.bucket,
            location.key
        )
    })?;
    let checked = crl.crl;
    let now = SystemTime::now();
    let next_update = checked.next_update.map(eos_ca::rfc3339);
    if checked.next_update.is_some_and(|t| t <= now) {
        return Err(anyhow::anyhow!(
            "AWS Private CA's CRL {} at s3://{}/{} expired at {}: an edge must never hold an expired CRL (Private CA refreshes it before nextUpdate; check the CA's CRL bucket permissions)",
            checked.number,
            location.bucket,
            location.key,
            next_update.unwrap_or_default()
        ));
    }
    let mut missing = Vec::new();
    for r in eos_store::certs::revoked_unexpired(store.conn(), &eos_ca::rfc3339(now))? {
        if r.signer != ca.arn() {
            continue;
        }
        let serial = eos_ca::Serial::from_hex(&r.serial)
            .map_err(|e| anyhow::anyhow!("state database: {e}"))?;
        if !checked.lists(&serial) {
            missing.push(r.serial);
        }
    }
    let file = CrlFile {
        number: checked.number,
        this_update: eos_ca::rfc3339(checked.this_update),
        // A CRL without nextUpdate never expires; AWS always writes one.
        next_update: next_update.unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned()),
        pem: checked.pem.into_bytes(),
    };
    Ok(CaMaterial {
        material: check_material(ca.trust_bundle().as_bytes(), Some(file))?,
        missing,
    })
}

/// The local CA's latest CRL, refused once expired.
fn local_crl(store: &eos_store::Store) -> anyhow::Result<CrlFile> {
    let latest = eos_store::certs::latest_crl(store.conn())?
        .ok_or_else(|| bad_input!("the CA has issued no CRL yet: run `eos-sec ca crl` first"))?;
    // Both are RFC 3339 UTC to the second: they compare as text.
    if latest.next_update <= eos_ca::rfc3339(SystemTime::now()) {
        return Err(bad_input!(
            "CRL {} expired at {}: run `eos-sec ca crl` for a current one (an edge must never hold an expired CRL)",
            latest.number,
            latest.next_update
        ));
    }
    Ok(CrlFile {
        number: latest.number,
        this_update: latest.this_update,
        next_update: latest.next_update,
        pem: latest.pem.into_bytes(),
    })
}

/// Spaces behind API Gateway domains whose certificates may outlive 72 h.
fn warnings(a: &GateArgs, ctx: &crate::Ctx) -> anyhow::Result<Vec<ApiGatewayWarning>> {
    let domains = &ctx.config.gate.domains;
    if domains.iter().all(|d| d.spaces.is_empty()) {
        return Ok(Vec::new());
    }
    let policy = super::policy::load_policy(a.policy.as_deref(), ctx)
        .context("[[gate.domains]] spaces: reading the policy for their modes")?;
    let lifetimes = ctx.config.ca.issuance_policy()?;
    let max = [
        lifetimes.service.max,
        lifetimes.device.max,
        lifetimes.cli.max,
        lifetimes.browser.max,
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    let mut out = Vec::new();
    for d in domains {
        let mut spaces = Vec::new();
        for s in &d.spaces {
            let id = eos_identity::SpaceId::new(s)
                .map_err(|e| bad_input!("[[gate.domains]] {}: space {s}: {e}", d.name))?;
            spaces.push((s.clone(), policy.space(&id)?.mode));
        }
        out.extend(api_gateway_warnings(&d.name, &spaces, max.as_secs() / 3600));
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct TargetReport {
    kind: TargetKind,
    name: String,
    status: &'static str,
    steps: Vec<GateStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct PublishReport {
    backend: String,
    bundle: eos_policy::gate::ObjectRef,
    crl: Option<serde_json::Value>,
    targets: Vec<TargetReport>,
    warnings: Vec<String>,
}

fn publish(a: GateArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let conf = &ctx.config.gate;
    let bucket = bucket(conf)?;
    let warnings = warnings(&a, ctx)?;
    let mut store = ctx.store()?;
    let rt = super::plan::runtime()?;
    let opts = aws_options(&a.aws, &ctx.config.backend);
    let gate = rt.block_on(AwsGate::connect(&opts, bucket))?;
    let material = rt.block_on(current_material(ctx, &store))?;
    let mut report = rt.block_on(publish_targets(ctx, &mut store, &gate, &material.material))?;
    report.warnings = warnings.iter().map(ToString::to_string).collect();
    // Still worth publishing (it is the newest the CA signed), but the
    // operator must know a revocation has not reached the edge.
    if !material.missing.is_empty() {
        report.warnings.push(material.missing_message());
    }
    if ctx.json {
        emit_json(&report)?;
    } else {
        emit(&render_publish(&report))?;
    }
    let failed = report.failed();
    if failed > 0 {
        anyhow::bail!(
            "gate publish: {failed} of {} targets failed (see above; `eos-sec gate status`)",
            report.targets.len()
        );
    }
    Ok(())
}

impl PublishReport {
    fn failed(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count()
    }
}

/// Publish the current material and bring every `[gate]` target to it,
/// recording each outcome. The report says which targets failed.
async fn publish_targets(
    ctx: &crate::Ctx,
    store: &mut eos_store::Store,
    gate: &AwsGate,
    material: &TrustMaterial,
) -> anyhow::Result<PublishReport> {
    let conf = &ctx.config.gate;
    let backend = gate.gate_backend_id();
    let published = publish_objects(gate, prefix(conf), material)
        .await
        .with_context(|| format!("publishing to s3://{}", gate.bucket()))?;
    let actor = super::actor();
    let mut targets = Vec::new();
    for name in &conf.trust_stores {
        let t = Target {
            backend: &backend,
            kind: TargetKind::TrustStore,
            name,
        };
        let previous =
            eos_store::gate::target::<TrustStoreRecord>(store.conn(), t)?.and_then(|r| r.record);
        let outcome = sync_trust_store(gate, name, &published, material, previous.as_ref()).await;
        targets.push(finish(store, t, outcome, &actor)?);
    }
    for d in &conf.domains {
        let t = Target {
            backend: &backend,
            kind: TargetKind::Domain,
            name: &d.name,
        };
        let outcome = sync_domain(gate, &d.name, &published).await;
        targets.push(finish(store, t, outcome, &actor)?);
    }
    Ok(PublishReport {
        backend,
        bundle: published.bundle.clone(),
        crl: published.crl.as_ref().map(|(object, file, entries)| {
            serde_json::json!({ "number": file.number, "this_update": file.this_update,
                "next_update": file.next_update, "entries": entries, "object": object })
        }),
        targets,
        warnings: Vec::new(),
    })
}

/// The gate's AWS side for `enforce` and `rollback`, `None` when no
/// `[[gate.listeners]]` are configured.
pub(crate) async fn connect_for_listeners(
    ctx: &crate::Ctx,
    aws: &AwsArgs,
) -> anyhow::Result<Option<AwsGate>> {
    connect_if(ctx, aws, !ctx.config.gate.listeners.is_empty()).await
}

/// The gate's AWS side when `wanted`.
async fn connect_if(
    ctx: &crate::Ctx,
    aws: &AwsArgs,
    wanted: bool,
) -> anyhow::Result<Option<AwsGate>> {
    if !wanted {
        return Ok(None);
    }
    let bucket = bucket(&ctx.config.gate)?;
    let opts = aws_options(aws, &ctx.config.backend);
    Ok(Some(AwsGate::connect(&opts, bucket).await?))
}

/// What eos-sec recorded on each of `[gate] trust_stores` on `backend`.
pub(crate) fn trust_store_records(
    ctx: &crate::Ctx,
    store: &eos_store::Store,
    backend: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, TrustStoreRecord>> {
    let mut out = std::collections::BTreeMap::new();
    for name in &ctx.config.gate.trust_stores {
        let t = Target {
            backend,
            kind: TargetKind::TrustStore,
            name,
        };
        if let Some(record) =
            eos_store::gate::target::<TrustStoreRecord>(store.conn(), t)?.and_then(|r| r.record)
        {
            out.insert(name.clone(), record);
        }
    }
    Ok(out)
}

/// The gate's AWS side for `sync`, `None` when no `[gate]` bucket is set.
pub(crate) async fn connect_for_sync(
    ctx: &crate::Ctx,
    aws: &AwsArgs,
) -> anyhow::Result<Option<AwsGate>> {
    connect_if(ctx, aws, ctx.config.gate.bucket.is_some()).await
}

/// What one sync pass did for the certificate gate.
#[derive(Debug, Serialize)]
pub(crate) struct Delivery {
    /// Queued CRLs delivered.
    pub delivered: usize,
    /// The CRL number every target now holds.
    pub crl_number: Option<u64>,
    /// Targets brought to it.
    pub targets: usize,
    /// Oldest queued CRL: committed -> read back on every target, in ms.
    pub lag_ms: i64,
}

/// Deliver the queued CRLs: publish the current one to every target and
/// mark the queue delivered only when every target read it back; a failed
/// target leaves the rows pending (retried at the next pass) with its
/// error recorded. `None` when nothing is queued.
pub(crate) async fn deliver_pending(
    ctx: &crate::Ctx,
    store: &mut eos_store::Store,
    gate: &AwsGate,
) -> anyhow::Result<Option<Delivery>> {
    let pending = eos_store::gate::pending_crls(store.conn())?;
    let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
        return Ok(None);
    };
    let material = current_material(ctx, store).await?;
    let report = publish_targets(ctx, store, gate, &material.material).await?;
    let failed = report.failed();
    if failed > 0 {
        let errors: Vec<String> = report
            .targets
            .iter()
            .filter_map(|t| {
                t.error
                    .as_ref()
                    .map(|e| format!("{} {}: {e}", t.kind.as_str(), t.name))
            })
            .collect();
        anyhow::bail!(
            "certificate gate: {failed} of {} targets failed, {} stays pending: {}",
            report.targets.len(),
            queued(last.crl_number),
            errors.join("; ")
        );
    }
    // Published, but not yet what the queue waits for: the revocation
    // stays queued until the CA's CRL lists it.
    if !material.missing.is_empty() {
        anyhow::bail!(
            "certificate gate: {} stays pending: {}",
            queued(last.crl_number),
            material.missing_message()
        );
    }
    let crl_number = report.crl.as_ref().and_then(|c| c["number"].as_u64());
    let now = time::OffsetDateTime::now_utc();
    let delivered = eos_store::gate::mark_crls_delivered(
        store,
        last.id,
        crl_number.or(last.crl_number).unwrap_or(0),
        &super::actor(),
        now,
    )?;
    let lag_ms = age_seconds(&first.at, now).map_or(0, |s| s * 1000);
    Ok(Some(Delivery {
        delivered,
        crl_number,
        targets: report.targets.len(),
        lag_ms,
    }))
}

/// How often `sync --watch` reads AWS Private CA's CRL object for a CRL
/// it re-issued on its own (before nextUpdate) when nothing is queued.
const PRIVATE_CA_CRL_POLL: std::time::Duration = std::time::Duration::from_secs(60);

/// Queue AWS Private CA's current CRL when a trust store holds another one
/// (Private CA re-issues its CRL before nextUpdate without anyone asking:
/// the edge must follow, or it would end up holding an expired CRL). The
/// number queued, or `None` when nothing is to do.
async fn queue_private_ca_crl(
    ctx: &crate::Ctx,
    store: &mut eos_store::Store,
    gate: &AwsGate,
) -> anyhow::Result<Option<u64>> {
    if !eos_store::gate::pending_crls(store.conn())?.is_empty() {
        return Ok(None);
    }
    let material = current_material(ctx, store).await?;
    let Some((crl, _)) = material.material.crl() else {
        return Ok(None);
    };
    let held = trust_store_records(ctx, store, &gate.gate_backend_id())?;
    let behind = ctx.config.gate.trust_stores.iter().any(|name| {
        held.get(name)
            .and_then(|r| r.crl.as_ref())
            .is_none_or(|c| c.number != crl.number)
    });
    if !behind {
        return Ok(None);
    }
    let tx = store.transaction()?;
    eos_store::gate::enqueue_crl(&tx, crl.number, time::OffsetDateTime::now_utc())?;
    tx.commit()?;
    Ok(Some(crl.number))
}

/// A queued row in words.
fn queued(number: Option<u64>) -> String {
    number.map_or_else(|| "the CA's next CRL".to_owned(), |n| format!("CRL {n}"))
}

/// `sync --watch`'s companion: re-issue the CRL before its nextUpdate
/// ([`super::ca::refresh_crl`]) and deliver queued CRLs as they appear
/// (polled every 500 ms), backing off after a failure (1 s doubling to 60 s).
pub(crate) async fn watch_pending(ctx: &crate::Ctx, gate: AwsGate) -> anyhow::Result<()> {
    let mut store = ctx.store()?;
    let mut backoff = std::time::Duration::from_secs(1);
    let mut private_ca_checked: Option<std::time::Instant> = None;
    loop {
        if ctx.config.ca.backend == CaBackendKind::Acmpca
            && private_ca_checked.is_none_or(|t| t.elapsed() >= PRIVATE_CA_CRL_POLL)
        {
            private_ca_checked = Some(std::time::Instant::now());
            match queue_private_ca_crl(ctx, &mut store, &gate).await {
                Ok(Some(n)) => {
                    tracing::info!(crl = n, "certificate gate: AWS Private CA wrote a new CRL")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "certificate gate: reading AWS Private CA's CRL failed")
                }
            }
        }
        match super::ca::refresh_crl(ctx) {
            Ok(Some(n)) => tracing::info!(
                crl = n,
                "certificate gate: CRL re-issued before its nextUpdate"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "certificate gate: re-issuing the CRL failed")
            }
        }
        let wait = match deliver_pending(ctx, &mut store, &gate).await {
            Ok(Some(d)) => {
                tracing::info!(crl = ?d.crl_number, targets = d.targets, lag_ms = d.lag_ms, "certificate gate: CRL delivered");
                backoff = std::time::Duration::from_secs(1);
                std::time::Duration::from_millis(500)
            }
            Ok(None) => std::time::Duration::from_millis(500),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), retry_in_s = backoff.as_secs(), "certificate gate: delivery failed");
                let wait = backoff;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// `sync status`'s rows for the certificate gate: per target, what it
/// holds, how long the oldest queued CRL has waited, the last error.
pub(crate) fn sync_status(store: &eos_store::Store) -> anyhow::Result<serde_json::Value> {
    let now = time::OffsetDateTime::now_utc();
    let pending = eos_store::gate::pending_crls(store.conn())?;
    let lag_s = pending
        .first()
        .and_then(|p| age_seconds(&p.at, now))
        .unwrap_or(0);
    let mut rows = Vec::new();
    for (backend, kind, name, row) in eos_store::gate::targets(store.conn())? {
        let crl = row.record.as_ref().and_then(|r| r.get("crl"));
        rows.push(serde_json::json!({
            "backend": backend,
            "kind": kind,
            "name": name,
            "crl_number": crl.and_then(|c| c.get("number")),
            "revocation_id": crl.and_then(|c| c.get("revocation_id")),
            "updated_at": row.updated_at,
            "pending_crls": pending.len(),
            "lag_s": lag_s,
            "last_error": row.last_error,
            "last_error_at": row.last_error_at,
        }));
    }
    Ok(serde_json::json!({
        "pending_crls": pending.iter().map(|p| p.crl_number).collect::<Vec<_>>(),
        "lag_s": lag_s,
        "targets": rows,
    }))
}

/// Record a target's outcome: the read-back record (audited) or the error.
fn finish<R: Serialize>(
    store: &mut eos_store::Store,
    t: Target<'_>,
    outcome: Result<(R, Vec<GateStep>), eos_policy::gate::GateError>,
    actor: &str,
) -> anyhow::Result<TargetReport> {
    let now = time::OffsetDateTime::now_utc();
    Ok(match outcome {
        Ok((record, steps)) => {
            let detail =
                serde_json::json!({ "backend": t.backend, "steps": steps, "record": record });
            eos_store::gate::record_success(store, t, &record, detail, actor, now)?;
            TargetReport {
                kind: t.kind,
                name: t.name.to_owned(),
                status: if steps.is_empty() {
                    "unchanged"
                } else {
                    "updated"
                },
                steps,
                error: None,
            }
        }
        Err(e) => {
            let message = e.to_string();
            eos_store::gate::record_error(store, t, &message, now)?;
            TargetReport {
                kind: t.kind,
                name: t.name.to_owned(),
                status: "failed",
                steps: Vec::new(),
                error: Some(message),
            }
        }
    })
}

fn render_publish(r: &PublishReport) -> String {
    let mut out = format!("bundle  {}\n", uri_of(&r.bundle));
    if let Some(crl) = &r.crl {
        out.push_str(&format!(
            "CRL     {} (number {}, {} entries)\n",
            crl["object"]["key"]
                .as_str()
                .map_or_else(String::new, |k| format!("s3://{}/{k}", r.bundle.bucket)),
            crl["number"],
            crl["entries"]
        ));
    } else {
        out.push_str("CRL     none (AWS Private CA publishes its own)\n");
    }
    for t in &r.targets {
        out.push_str(&format!("{} {}: {}\n", t.kind.as_str(), t.name, t.status));
        for s in &t.steps {
            out.push_str(&format!("  {s}\n"));
        }
        if let Some(e) = &t.error {
            out.push_str(&format!("  error: {e}\n"));
        }
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn uri_of(o: &eos_policy::gate::ObjectRef) -> String {
    match &o.version {
        Some(v) => format!("{} (version {v})", o.uri()),
        None => o.uri(),
    }
}

#[derive(Debug, Serialize)]
struct Wants {
    bundle_sha256: String,
    bundle_key: String,
    crl_number: Option<u64>,
    /// Revoked serials the CA's CRL does not list yet (AWS Private CA).
    missing_revocations: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TrustStoreStatus {
    name: String,
    exists: bool,
    arn: Option<String>,
    status: Option<String>,
    ca_certificates: Option<usize>,
    revocation_ids: Vec<i64>,
    bundle_sha256: Option<String>,
    crl_number: Option<u64>,
    crl_this_update: Option<String>,
    crl_age_seconds: Option<i64>,
    updated_at: Option<String>,
    in_sync: bool,
    /// Why it does not hold exactly the CA's current bundle and CRL (what
    /// `enforce` refuses `verify` for).
    stale_reason: Option<String>,
    last_error: Option<String>,
    /// Reading it now failed.
    read_error: Option<String>,
}

/// One `[[gate.listeners]]` entry as it stands.
#[derive(Debug, Serialize)]
struct ListenerStatus {
    arn: String,
    spaces: Vec<String>,
    /// `off`, `passthrough`, `verify` as read (`None`: unread or missing).
    mode: Option<&'static str>,
    exists: bool,
    /// The trust store the listener verifies against, as read (mode
    /// `verify` only).
    verifies_against: Option<String>,
    /// Its `[gate] trust_stores` entry, its ARN and status as read.
    trust_store: String,
    trust_store_arn: Option<String>,
    trust_store_status: Option<String>,
    /// The CRL number eos-sec put on that trust store.
    crl_number: Option<u64>,
    /// The CA's current CRL number.
    ca_crl_number: Option<u64>,
    /// `verify` would not (or does not) check exactly the CA's current
    /// bundle and CRL.
    stale: bool,
    stale_reason: Option<String>,
    read_error: Option<String>,
}

/// A listener's row from its read and its trust store's row.
fn listener_status(
    conf: &eos_policy::edge::ListenerConfig,
    read: Result<Option<ListenerAuth>, eos_policy::gate::GateError>,
    store: Option<&TrustStoreStatus>,
    ca_crl_number: Option<u64>,
) -> ListenerStatus {
    let (auth, read_error) = live(read);
    let auth = auth.map(|a| a.normalized());
    let stale_reason = match (&auth, store) {
        (None, _) if read_error.is_none() => Some("the listener does not exist".to_owned()),
        (_, None) => Some(format!(
            "trust store {} is not in [gate] trust_stores",
            conf.trust_store
        )),
        (Some(a), Some(t))
            if a.mode == eos_policy::compile::ListenerMode::Verify
                && a.trust_store_arn != t.arn =>
        {
            Some(format!(
                "it verifies against {}, not trust store {} ({})",
                a.trust_store_arn.as_deref().unwrap_or("no trust store"),
                t.name,
                t.arn.as_deref().unwrap_or("missing")
            ))
        }
        (_, Some(t)) => t.stale_reason.clone(),
    };
    ListenerStatus {
        arn: conf.arn.clone(),
        spaces: conf.spaces.iter().map(ToString::to_string).collect(),
        mode: auth.as_ref().map(|a| a.mode.as_str()),
        exists: auth.is_some(),
        verifies_against: auth.and_then(|a| a.trust_store_arn),
        trust_store: conf.trust_store.clone(),
        trust_store_arn: store.and_then(|t| t.arn.clone()),
        trust_store_status: store.and_then(|t| t.status.clone()),
        crl_number: store.and_then(|t| t.crl_number),
        ca_crl_number,
        stale: stale_reason.is_some(),
        stale_reason,
        read_error,
    }
}

#[derive(Debug, Serialize)]
struct DomainStatus {
    name: String,
    exists: bool,
    truststore_uri: Option<String>,
    truststore_warnings: Vec<String>,
    bundle_sha256: Option<String>,
    updated_at: Option<String>,
    in_sync: bool,
    last_error: Option<String>,
    /// Reading it now failed.
    read_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    backend: String,
    wants: Wants,
    trust_stores: Vec<TrustStoreStatus>,
    listeners: Vec<ListenerStatus>,
    domains: Vec<DomainStatus>,
    warnings: Vec<String>,
}

fn age_seconds(rfc3339: &str, now: time::OffsetDateTime) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (now - t).whole_seconds())
}

fn status(a: GateArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let conf = &ctx.config.gate;
    let bucket = bucket(conf)?;
    let warnings = warnings(&a, ctx)?;
    let store = ctx.store()?;
    let listeners = conf.listener_configs()?;
    let rt = super::plan::runtime()?;
    let current = rt.block_on(current_material(ctx, &store))?;
    let incomplete = (!current.missing.is_empty()).then(|| current.missing_message());
    let material = &current.material;
    let wants = Wants {
        bundle_sha256: sha256_hex(material.bundle()),
        bundle_key: object_key(prefix(conf), ObjectKind::Bundle, material.bundle()),
        crl_number: material.crl().map(|(c, _)| c.number),
        missing_revocations: current.missing.clone(),
    };
    let opts = aws_options(&a.aws, &ctx.config.backend);
    let gate = rt.block_on(AwsGate::connect(&opts, bucket))?;
    let backend = gate.gate_backend_id();
    let now = time::OffsetDateTime::now_utc();
    let mut trust_stores = Vec::new();
    for name in &conf.trust_stores {
        let t = Target {
            backend: &backend,
            kind: TargetKind::TrustStore,
            name,
        };
        let row = eos_store::gate::target::<TrustStoreRecord>(store.conn(), t)?;
        let (record, updated_at, last_error) = match row {
            Some(r) => (r.record, r.updated_at, r.last_error),
            None => (None, None, None),
        };
        let read = match check_trust_store_name(name) {
            Ok(()) => rt.block_on(gate.trust_store(name)),
            Err(e) => Err(e),
        };
        let (live, read_error) = live(read);
        let revocation_ids: Vec<i64> = live
            .as_ref()
            .map(|l| l.revocations.iter().map(|r| r.id).collect())
            .unwrap_or_default();
        let crl = record.as_ref().and_then(|r| r.crl.as_ref());
        // The check enforce runs before verify (enforce-trust-store-stale).
        let stale_reason = match (&read_error, &incomplete) {
            (Some(e), _) => Some(format!("cannot read it now: {e}")),
            (None, Some(m)) => Some(m.clone()),
            (None, None) => trust_store_stale(
                &trust_store_snapshot(name, live.clone(), record.as_ref()),
                record.as_ref(),
                material,
            ),
        };
        let in_sync = stale_reason.is_none();
        trust_stores.push(TrustStoreStatus {
            name: name.clone(),
            exists: live.is_some(),
            arn: live.as_ref().map(|l| l.arn.clone()),
            status: live.as_ref().map(|l| l.status.clone()),
            ca_certificates: live.as_ref().map(|l| l.ca_certificates),
            revocation_ids,
            bundle_sha256: record.as_ref().map(|r| r.bundle.sha256.clone()),
            crl_number: crl.map(|c| c.number),
            crl_this_update: crl.map(|c| c.this_update.clone()),
            crl_age_seconds: crl.and_then(|c| age_seconds(&c.this_update, now)),
            updated_at,
            in_sync,
            stale_reason,
            last_error,
            read_error,
        });
    }
    let mut domains = Vec::new();
    for d in &conf.domains {
        let t = Target {
            backend: &backend,
            kind: TargetKind::Domain,
            name: &d.name,
        };
        let row = eos_store::gate::target::<DomainRecord>(store.conn(), t)?;
        let (record, updated_at, last_error) = match row {
            Some(r) => (r.record, r.updated_at, r.last_error),
            None => (None, None, None),
        };
        let (live, read_error) = live(rt.block_on(gate.domain(&d.name)));
        let wanted_uri = format!("s3://{bucket}/{}", wants.bundle_key);
        domains.push(DomainStatus {
            name: d.name.clone(),
            exists: live.is_some(),
            in_sync: live
                .as_ref()
                .is_some_and(|l| l.truststore_uri.as_deref() == Some(wanted_uri.as_str())),
            truststore_uri: live.as_ref().and_then(|l| l.truststore_uri.clone()),
            truststore_warnings: live.map(|l| l.warnings).unwrap_or_default(),
            bundle_sha256: record.map(|r| r.bundle.sha256),
            updated_at,
            last_error,
            read_error,
        });
    }
    let listeners = listeners
        .iter()
        .map(|l| {
            let read = rt.block_on(gate.listener(&l.arn));
            let store = trust_stores.iter().find(|t| t.name == l.trust_store);
            listener_status(l, read, store, wants.crl_number)
        })
        .collect();
    let report = StatusReport {
        backend,
        wants,
        trust_stores,
        listeners,
        domains,
        warnings: warnings.iter().map(ToString::to_string).collect(),
    };
    if ctx.json {
        emit_json(&report)?;
    } else {
        emit(&render_status(&report))?;
    }
    let unread = report
        .trust_stores
        .iter()
        .filter(|t| t.read_error.is_some())
        .count()
        + report
            .listeners
            .iter()
            .filter(|l| l.read_error.is_some())
            .count()
        + report
            .domains
            .iter()
            .filter(|d| d.read_error.is_some())
            .count();
    if unread > 0 {
        anyhow::bail!("gate status: {unread} targets could not be read (see above)");
    }
    Ok(())
}

/// A live read that fails is reported in its row, not for the whole
/// command: the other targets and the record are still worth showing.
fn live<T>(read: Result<Option<T>, eos_policy::gate::GateError>) -> (Option<T>, Option<String>) {
    match read {
        Ok(v) => (v, None),
        Err(e) => (None, Some(e.to_string())),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..16).unwrap_or(sha)
}

fn render_listener(out: &mut String, l: &ListenerStatus) {
    let number = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    out.push_str(&format!(
        "listener {}: {} ({})\n",
        l.arn,
        if l.read_error.is_some() {
            "unknown"
        } else {
            l.mode.unwrap_or("missing")
        },
        l.spaces.join(", ")
    ));
    out.push_str(&format!(
        "  trust store {} {} {}\n",
        l.trust_store,
        l.trust_store_arn.as_deref().unwrap_or("-"),
        l.trust_store_status.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  CRL {} on the trust store, CA's CRL {}: {}\n",
        number(l.crl_number),
        number(l.ca_crl_number),
        match &l.stale_reason {
            Some(why) => format!("STALE ({why})"),
            None => "current".to_owned(),
        }
    ));
    if let Some(e) = &l.read_error {
        out.push_str(&format!("  cannot read it now: {e}\n"));
    }
}

fn render_status(r: &StatusReport) -> String {
    let mut out = format!(
        "CA wants bundle sha256:{} and CRL {}\n",
        short(&r.wants.bundle_sha256),
        r.wants
            .crl_number
            .map_or_else(|| "none".to_owned(), |n| n.to_string())
    );
    if !r.wants.missing_revocations.is_empty() {
        out.push_str(&format!(
            "  its CRL does not list revoked {} yet\n",
            r.wants.missing_revocations.join(", ")
        ));
    }
    for t in &r.trust_stores {
        out.push_str(&format!(
            "trust store {}: {}\n",
            t.name,
            if t.read_error.is_some() {
                "unknown".to_owned()
            } else if !t.exists {
                "missing".to_owned()
            } else if t.in_sync {
                "in sync".to_owned()
            } else {
                "STALE".to_owned()
            }
        ));
        if let Some(arn) = &t.arn {
            out.push_str(&format!(
                "  {arn} {} ({} CA certificates)\n",
                t.status.as_deref().unwrap_or("?"),
                t.ca_certificates.unwrap_or(0)
            ));
        }
        out.push_str(&format!(
            "  bundle sha256:{}\n",
            t.bundle_sha256.as_deref().map_or("-", short)
        ));
        let ids: Vec<String> = t.revocation_ids.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "  CRL {} ({}), revocation ids [{}]\n",
            t.crl_number
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            t.crl_age_seconds
                .map_or_else(|| "age -".to_owned(), |s| format!("{s} s old")),
            ids.join(", ")
        ));
        if let (Some(why), None) = (&t.stale_reason, &t.read_error) {
            out.push_str(&format!("  stale: {why}\n"));
        }
        if let Some(e) = &t.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
        if let Some(e) = &t.read_error {
            out.push_str(&format!("  cannot read it now: {e}\n"));
        }
    }
    for l in &r.listeners {
        render_listener(&mut out, l);
    }
    for d in &r.domains {
        out.push_str(&format!(
            "domain {}: {}\n  truststore {}\n",
            d.name,
            if d.read_error.is_some() {
                "unknown"
            } else if !d.exists {
                "missing"
            } else if d.in_sync {
                "in sync"
            } else {
                "STALE"
            },
            d.truststore_uri.as_deref().unwrap_or("-")
        ));
        for w in &d.truststore_warnings {
            out.push_str(&format!("  API Gateway warning: {w}\n"));
        }
        if let Some(e) = &d.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
        if let Some(e) = &d.read_error {
            out.push_str(&format!("  cannot read it now: {e}\n"));
        }
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use eos_policy::compile::ListenerMode;
    use eos_policy::edge::ListenerConfig;
    use eos_policy::gate::GateError;

    use super::*;

    const STORE: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:111122223333:truststore/eos-ca/3ym756xh7yj";
    const OTHER: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:111122223333:truststore/old/0a1b2c3d";

    fn listener(n: u32, space: &str) -> ListenerConfig {
        ListenerConfig {
            arn: format!(
                "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/edge/50dc6c495c0c9188/f2f7dc8efc52260{n}"
            ),
            spaces: vec![eos_identity::SpaceId::new(space).unwrap()],
            trust_store: "eos-ca".to_owned(),
            advertise_ca_names: false,
            ignore_client_certificate_expiry: false,
        }
    }

    fn store(crl_number: u64, stale_reason: Option<&str>) -> TrustStoreStatus {
        TrustStoreStatus {
            name: "eos-ca".to_owned(),
            exists: true,
            arn: Some(STORE.to_owned()),
            status: Some("ACTIVE".to_owned()),
            ca_certificates: Some(1),
            revocation_ids: vec![4],
            bundle_sha256: Some(
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            ),
            crl_number: Some(crl_number),
            crl_this_update: Some("2026-12-07T21:00:00Z".to_owned()),
            crl_age_seconds: Some(120),
            updated_at: Some("2026-12-07T21:00:05Z".to_owned()),
            in_sync: stale_reason.is_none(),
            stale_reason: stale_reason.map(str::to_owned),
            last_error: None,
            read_error: None,
        }
    }

    fn report(store: TrustStoreStatus, ca_crl: u64) -> StatusReport {
        let reads: Vec<(ListenerConfig, Result<Option<ListenerAuth>, GateError>)> = vec![
            (listener(1, "acme"), Ok(Some(ListenerAuth::verify(STORE, false)))),
            (
                listener(2, "beta"),
                Ok(Some(ListenerAuth::mode_only(ListenerMode::Passthrough))),
            ),
            (listener(3, "gamma"), Ok(Some(ListenerAuth::verify(OTHER, true)))),
            (listener(4, "delta"), Ok(None)),
            (
                listener(5, "omega"),
                Err(GateError::Backend(
                    "DescribeListeners x: throttled by ELBv2 after 5 attempts (ThrottlingException: Rate exceeded)"
                        .to_owned(),
                )),
            ),
        ];
        let listeners = reads
            .into_iter()
            .map(|(conf, read)| listener_status(&conf, read, Some(&store), Some(ca_crl)))
            .collect();
        StatusReport {
            backend: "aws:eu-west-1".to_owned(),
            wants: Wants {
                bundle_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
                bundle_key: "eos-sec/bundle/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.pem".to_owned(),
                crl_number: Some(ca_crl),
                missing_revocations: Vec::new(),
            },
            trust_stores: vec![store],
            listeners,
            domains: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// `gate status` per listener: mode, the trust store it verifies
    /// against and its state, the CRL the store carries against the CA's,
    /// stale or current.
    #[test]
    fn status_shows_each_listener_against_its_trust_store() {
        let current = report(store(8, None), 8);
        let stale = report(
            store(
                7,
                Some(
                    "it holds CRL 7, the CA's current one is 8: run `eos-sec sync` or `eos-sec gate publish`",
                ),
            ),
            8,
        );
        let flags: Vec<(Option<&str>, bool)> = current
            .listeners
            .iter()
            .map(|l| (l.mode, l.stale))
            .collect();
        assert_eq!(
            flags,
            [
                (Some("verify"), false),
                (Some("passthrough"), false),
                (Some("verify"), true),
                (None, true),
                (None, false),
            ]
        );
        assert!(
            stale
                .listeners
                .iter()
                .all(|l| l.stale || l.read_error.is_some())
        );
        insta::assert_snapshot!("status_listeners_current", render_status(&current));
        insta::assert_snapshot!("status_listeners_stale", render_status(&stale));
        // The records themselves, not a serde_json::Value: a Value's key
        // order depends on whether some crate in the build turned on
        // serde_json's `preserve_order` (it is on in a workspace build and
        // off in `-p eos-sec`), so the snapshot would differ between the two.
        insta::assert_json_snapshot!("status_listeners_json", &stale.listeners);
    }
}
