-- 0013: revocation drills. Each drill's throwaway certificate is marked here
-- in the transaction that records it in `certs`, so a drill that dies
-- before it revokes (kill -9, a crash) leaves a row whose certificate is
-- still active: the next drill revokes it first. `finished_at` and
-- `outcome` (JSON: status, time to refuse) are set when a drill ends.
CREATE TABLE drills (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      TEXT NOT NULL UNIQUE REFERENCES certs(serial),
    target      TEXT NOT NULL,
    started_at  TEXT NOT NULL,                     -- RFC 3339 UTC
    finished_at TEXT,
    outcome     TEXT                               -- JSON, when finished
);
