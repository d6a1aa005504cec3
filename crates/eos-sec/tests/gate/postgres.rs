//! The certificate gate with the state store on PostgreSQL
//! (`EOS_SEC_STORE_URL`), against moto: a revocation queued in its
//! transaction, delivered by `sync` to S3 and the API Gateway domain, then
//! `gate publish` and `gate status` — each read back from moto (boto3) and
//! from the database itself.

use eos_store::Sql;

use super::{revoke_and_sync, synced_gate_with};

#[test]
fn a_revocation_reaches_the_edge_with_the_store_on_postgresql() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = cluster.create_database("eos");
    let Some((moto, st)) = synced_gate_with("", vec![("EOS_SEC_STORE_URL", url.clone())]) else {
        return;
    };
    revoke_and_sync(&moto, &st);

    let report = st.json(&["gate", "publish"]);
    assert_eq!(report["crl"]["number"], 2);
    assert_eq!(report["targets"][0]["kind"], "domain");
    let status = st.json(&["gate", "status"]);
    assert_eq!(status["wants"]["crl_number"], 2);
    assert_eq!(status["domains"][0]["in_sync"], true, "{status}");

    // Read back from the database: the state is there, not in a state.db.
    assert!(!st.path().join("state/state.db").exists());
    let store =
        eos_store::Store::open_postgres(&eos_store::StoreUrl::parse(&url).unwrap()).unwrap();
    let count = |sql: &str| {
        store
            .conn()
            .query_one(sql, &[], |r| r.get::<i64>(0))
            .unwrap()
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM gate_outbox WHERE delivered_at IS NOT NULL"),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM gate_outbox WHERE delivered_at IS NULL"),
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM certs WHERE status = 'revoked'"),
        1
    );
    assert_eq!(count("SELECT MAX(number) FROM crls"), 2);
    let targets = eos_store::gate::targets(store.conn()).unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].2, "api.acme.example");
    assert!(targets[0].3.record.is_some() && targets[0].3.last_error.is_none());
    let actions: Vec<String> = store
        .audit_log(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    for a in ["gate.delivered", "gate.publish"] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}
