-- 0002: Network Access Rules, observations, plans, IPSets of the local
-- backend, what eos-sec wrote to each backend's IPSets, and the outbox.

-- Declared rules. One rule per (space, cidr); re-declaring updates it.
CREATE TABLE rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    space       TEXT NOT NULL,
    cidr        TEXT NOT NULL,                      -- canonical, never /0
    family      TEXT NOT NULL CHECK (family IN ('v4', 'v6')),
    label       TEXT NOT NULL,
    declared_by TEXT NOT NULL,
    created     TEXT NOT NULL,                      -- RFC 3339 UTC
    expires     TEXT,                               -- RFC 3339 UTC or NULL
    UNIQUE (space, cidr)
);

-- Every rule change, written in the same transaction as the change, for the
-- sync service to deliver (at least once) to the IPSets.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    topic        TEXT NOT NULL,                     -- rule.added | rule.updated | rule.removed
    space        TEXT NOT NULL,
    payload      TEXT NOT NULL,                     -- JSON: the rule
    delivered_at TEXT
);
CREATE INDEX outbox_pending ON outbox(delivered_at, id);

-- The last scan's evidence per (space, address).
CREATE TABLE observations (
    space          TEXT NOT NULL,
    ip             TEXT NOT NULL,
    requests       INTEGER NOT NULL,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    distinct_days  INTEGER NOT NULL,
    distinct_users INTEGER NOT NULL,
    example_users  TEXT NOT NULL DEFAULT '[]',      -- JSON array
    status         TEXT NOT NULL DEFAULT '{}',      -- JSON StatusCounts
    scanned_at     TEXT NOT NULL,
    PRIMARY KEY (space, ip)
);

-- Plans as shown to the operator (the saved-plan JSON).
CREATE TABLE plans (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created    TEXT NOT NULL,
    backend    TEXT NOT NULL,
    body       TEXT NOT NULL,
    applied_at TEXT
);

-- The local backend's IPSets. `version` is the lock token.
CREATE TABLE local_ipsets (
    name        TEXT PRIMARY KEY,
    space       TEXT NOT NULL,
    family      TEXT NOT NULL CHECK (family IN ('v4', 'v6')),
    description TEXT NOT NULL,
    tags        TEXT NOT NULL,                      -- JSON object
    addresses   TEXT NOT NULL,                      -- JSON array of CIDRs
    version     INTEGER NOT NULL,
    updated     TEXT NOT NULL
);

-- Entries eos-sec wrote to a backend's IPSet and has not removed since:
-- anything else in the set is drift, reported and never removed.
CREATE TABLE managed_entries (
    backend    TEXT NOT NULL,
    name       TEXT NOT NULL,
    cidr       TEXT NOT NULL,
    written_at TEXT NOT NULL,
    PRIMARY KEY (backend, name, cidr)
);
