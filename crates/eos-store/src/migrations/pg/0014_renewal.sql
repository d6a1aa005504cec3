-- 0014 (PostgreSQL): renewal. A certificate has at most one successor (the
-- unique index), so two renewals of one certificate cannot both succeed.
ALTER TABLE certs ADD COLUMN renewed_from TEXT REFERENCES certs(serial);
CREATE UNIQUE INDEX certs_renewed_from ON certs(renewed_from) WHERE renewed_from IS NOT NULL;

-- Accounts an operator disabled: nothing is issued to them, by a code or by
-- renewal, until they are enabled again.
CREATE TABLE disabled_accounts (
    space       TEXT NOT NULL,
    "user"      TEXT NOT NULL,
    disabled_at TEXT NOT NULL,                     -- RFC 3339 UTC
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (space, "user")
);
