-- 0003: security codes (eos-codes). Never the code itself: a keyed hash
-- (HMAC-SHA256 under a pepper kept outside this database) over the code and
-- its binding. A database writer without the pepper can neither forge a code
-- nor move one to another space or extend its life.
CREATE TABLE codes (
    code_id       TEXT    PRIMARY KEY,            -- public half, 9 Crockford symbols
    hash          BLOB    NOT NULL CHECK (length(hash) = 32),
    pepper_id     TEXT    NOT NULL,               -- which pepper made the hash
    space         TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('onboarding', 'recovery')),
    purposes      TEXT    NOT NULL,               -- canonical comma list
    max_uses      INTEGER CHECK (max_uses IS NULL OR max_uses > 0), -- per purpose; NULL = unlimited
    issued_at     INTEGER NOT NULL,               -- Unix seconds
    expires_at    INTEGER NOT NULL,
    issued_by     TEXT    NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    revoke_reason TEXT
) STRICT;
CREATE INDEX codes_space_user ON codes(space, user_id);
CREATE INDEX codes_pepper ON codes(pepper_id, expires_at);

-- The binding and hash never change after issue; only revocation does.
CREATE TRIGGER codes_immutable BEFORE UPDATE OF
    code_id, hash, pepper_id, space, user_id, role, kind, purposes, max_uses,
    issued_at, expires_at, issued_by ON codes
BEGIN SELECT RAISE(ABORT, 'codes: binding and hash are immutable'); END;

-- Uses per purpose. Spent in the same transaction as the action they authorise.
CREATE TABLE code_uses (
    code_id      TEXT    NOT NULL REFERENCES codes(code_id),
    purpose      TEXT    NOT NULL,
    uses         INTEGER NOT NULL CHECK (uses >= 0),
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (code_id, purpose)
) STRICT;

-- Failure counts for backoff: `src:<addr or /64>` and `code:<id>`.
CREATE TABLE code_throttle (
    key             TEXT    PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    blocked_until   INTEGER NOT NULL
) STRICT;
CREATE INDEX code_throttle_last ON code_throttle(last_failure_at);
