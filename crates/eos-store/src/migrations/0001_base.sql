-- 0001: the audit log. Append-only: triggers refuse UPDATE and DELETE, so a
-- bug or a careless script cannot rewrite history through eos-sec's connection.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,             -- RFC 3339 UTC
    actor   TEXT    NOT NULL,             -- OS user, service name, or code id
    action  TEXT    NOT NULL,             -- stable dotted name, e.g. ipset.apply
    subject TEXT    NOT NULL DEFAULT '',  -- what it acted on, e.g. eos-acme-v4
    detail  TEXT    NOT NULL DEFAULT '{}' -- JSON; never secrets
);
CREATE INDEX audit_log_action ON audit_log(action, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Small state values (CRL number, cursors).
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
