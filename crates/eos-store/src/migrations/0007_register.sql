-- 0007: what the registration service did with each code use. One row per
-- registered address (kind ip or recover) or issued certificate (cert), so a
-- recovery can find and replace the admin's previous recovery address, and
-- an operator can trace every rule and certificate back to its code.
CREATE TABLE registrations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,                    -- RFC 3339 UTC
    kind        TEXT NOT NULL CHECK (kind IN ('ip', 'cert', 'recover')),
    space       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    code_id     TEXT NOT NULL,                    -- the public half only
    source      TEXT NOT NULL,                    -- the resolved client address
    cidr        TEXT,                             -- ip, recover: the rule's network
    wrote_rule  INTEGER NOT NULL DEFAULT 0,       -- 0: the rule existed already
    serial      TEXT,                             -- cert: the certificate
    replaced_by INTEGER REFERENCES registrations(id),
    CHECK ((kind = 'cert') = (serial IS NOT NULL)),
    CHECK ((kind = 'cert') = (cidr IS NULL))
);
CREATE INDEX registrations_account ON registrations(space, user_id, kind);
