-- 0006 (PostgreSQL): the syncer's record per backend and IPSet: when it last succeeded,
-- the last error, how many writes it sent, and the lag of its last delivery.
CREATE TABLE sync_state (
    backend        TEXT NOT NULL,
    name           TEXT NOT NULL,                   -- IPSet name
    last_attempt   TEXT,                            -- RFC 3339 UTC
    last_success   TEXT,
    last_error     TEXT,
    last_error_at  TEXT,
    writes         BIGINT NOT NULL DEFAULT 0,      -- UpdateIPSet/CreateIPSet calls sent
    last_lag_ms    BIGINT,                         -- oldest delivered change: enqueued -> written
    PRIMARY KEY (backend, name)
);

