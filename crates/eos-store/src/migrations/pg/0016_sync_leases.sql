-- 0016 (PostgreSQL): sync workers' leases. Several `eos-sec sync --watch` (or `serve`
-- with `[serve] sync = true`) instances on one database write each space's
-- IPSets one at a time: a worker serves a space only while it holds the
-- space's lease for the backend, taken or renewed by one conditional upsert
-- (free, expired, or already its own), and marks outbox rows delivered only
-- in a transaction that finds the lease still its own (fencing). Times are
-- the database's clock in milliseconds since the Unix epoch, so workers on
-- machines whose clocks differ agree on when a lease expires.
CREATE TABLE sync_leases (
    backend    TEXT    NOT NULL,
    space      TEXT    NOT NULL,
    holder     TEXT    NOT NULL,   -- the worker: host, process id, start
    expires_ms BIGINT  NOT NULL,
    PRIMARY KEY (backend, space)
);
