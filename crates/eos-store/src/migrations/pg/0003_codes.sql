-- 0003 (PostgreSQL): security codes. Never the code itself: a keyed hash.
CREATE TABLE codes (
    code_id       TEXT   PRIMARY KEY,
    hash          BYTEA  NOT NULL CHECK (length(hash) = 32),
    pepper_id     TEXT   NOT NULL,
    space         TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    role          TEXT   NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('onboarding', 'recovery')),
    purposes      TEXT   NOT NULL,
    max_uses      BIGINT CHECK (max_uses IS NULL OR max_uses > 0),
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    issued_by     TEXT   NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT,
    revoke_reason TEXT
);
CREATE INDEX codes_space_user ON codes(space, user_id);
CREATE INDEX codes_pepper ON codes(pepper_id, expires_at);

-- The binding and hash never change after issue; only revocation does.
CREATE TRIGGER codes_immutable BEFORE UPDATE OF
    code_id, hash, pepper_id, space, user_id, role, kind, purposes, max_uses,
    issued_at, expires_at, issued_by ON codes
FOR EACH ROW EXECUTE FUNCTION eos_refuse('codes: binding and hash are immutable');

CREATE TABLE code_uses (
    code_id      TEXT   NOT NULL REFERENCES codes(code_id),
    purpose      TEXT   NOT NULL,
    uses         BIGINT NOT NULL CHECK (uses >= 0),
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (code_id, purpose)
);

CREATE TABLE code_throttle (
    key             TEXT   PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until   BIGINT NOT NULL
);
CREATE INDEX code_throttle_last ON code_throttle(last_failure_at);
