-- 0005: enforce and roll back. Web ACL snapshots taken before every change,
-- the stage each space is at per backend and Web ACL, and the Web ACLs of
-- the local backend.

-- The whole Web ACL as read before a change, with its lock token and the
-- space's IPSets. Append-only: a snapshot is what rollback restores.
CREATE TABLE acl_snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run        INTEGER NOT NULL,                    -- id of the run's first snapshot
    at         TEXT NOT NULL,                       -- RFC 3339 UTC
    kind       TEXT NOT NULL CHECK (kind IN ('enforce', 'rollback')),
    space      TEXT NOT NULL,
    backend    TEXT NOT NULL,
    web_acl    TEXT NOT NULL,
    lock_token TEXT NOT NULL,
    owned      TEXT NOT NULL,                       -- JSON: default action + eos-* rules
    document   TEXT NOT NULL,                       -- JSON: the whole Web ACL as read
    sets       TEXT NOT NULL,                       -- JSON: set name -> {addresses, lock}
    stages     TEXT NOT NULL                        -- JSON: space -> stage
);
CREATE INDEX acl_snapshots_run ON acl_snapshots(backend, web_acl, space, kind, run);

CREATE TRIGGER acl_snapshots_no_update BEFORE UPDATE ON acl_snapshots
BEGIN SELECT RAISE(ABORT, 'acl_snapshots is append-only'); END;
CREATE TRIGGER acl_snapshots_no_delete BEFORE DELETE ON acl_snapshots
BEGIN SELECT RAISE(ABORT, 'acl_snapshots is append-only'); END;

-- The stage each space is at, as enforce and rollback left it.
CREATE TABLE space_stages (
    backend TEXT NOT NULL,
    web_acl TEXT NOT NULL,
    space   TEXT NOT NULL,
    stage   TEXT NOT NULL CHECK (stage IN ('off', 'staged', 'count', 'enforce')),
    updated TEXT NOT NULL,
    PRIMARY KEY (backend, web_acl, space)
);

-- The local backend's Web ACLs: the WAFv2 API JSON of each; `version` is
-- the lock token.
CREATE TABLE local_web_acls (
    name     TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    version  INTEGER NOT NULL,
    updated  TEXT NOT NULL
);
