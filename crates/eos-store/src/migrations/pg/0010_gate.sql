-- 0010 (PostgreSQL): the certificate gate. Per backend, trust store and API Gateway
-- domain: what eos-sec attached (bundle object, CRL object and its
-- revocation id), recorded only after it was read back, and the last error.
CREATE TABLE gate_targets (
    backend       TEXT NOT NULL,                   -- aws:<region>
    kind          TEXT NOT NULL CHECK (kind IN ('trust-store', 'domain')),
    name          TEXT NOT NULL,                   -- trust store name or domain name
    record        TEXT,                            -- JSON (eos_policy::gate::{TrustStoreRecord,DomainRecord})
    updated_at    TEXT,                            -- RFC 3339 UTC, when the record was read back
    last_error    TEXT,
    last_error_at TEXT,
    PRIMARY KEY (backend, kind, name)
);
