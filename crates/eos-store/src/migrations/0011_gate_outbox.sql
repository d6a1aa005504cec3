-- 0011: the certificate gate's outbox. Every CRL the CA issues (`ca revoke`,
-- `ca crl`) is queued here in the same transaction as the CRL itself, for
-- `eos-sec sync` to publish to S3 and the trust stores; a row is marked
-- delivered only after every [gate] target read back the CRL. Its own table,
-- so the IP syncer's readers of `outbox` (rule rows) never see it.
CREATE TABLE gate_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,                    -- RFC 3339 UTC, when the CRL was committed
    crl_number   INTEGER NOT NULL,
    delivered_at TEXT
);
CREATE INDEX gate_outbox_pending ON gate_outbox(delivered_at, id);
