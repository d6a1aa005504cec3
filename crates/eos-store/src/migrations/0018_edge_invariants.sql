-- 0018: the enforce and certificate-gate tables' invariants, kept by the
-- database for every writer (several instances may share one PostgreSQL;
-- the same rules hold on SQLite).

-- Snapshot ids only grow, so the newest snapshot is the one with the
-- highest id; and a snapshot's run names the first snapshot of its run (its
-- own id, or an earlier run start of the same Web ACL, space and kind):
-- rollback restores a run's first snapshot and must find the right one.
-- AFTER INSERT: in a BEFORE trigger an id SQLite assigns is not known yet.
CREATE TRIGGER acl_snapshots_ids_grow AFTER INSERT ON acl_snapshots
WHEN NEW.id < (SELECT MAX(id) FROM acl_snapshots WHERE id <> NEW.id)
BEGIN SELECT RAISE(ABORT, 'acl_snapshots: id must exceed the last snapshot''s'); END;

CREATE TRIGGER acl_snapshots_run_start AFTER INSERT ON acl_snapshots
WHEN NEW.run <> NEW.id AND NOT EXISTS (
    SELECT 1 FROM acl_snapshots s
    WHERE s.id = NEW.run AND s.run = s.id AND s.backend = NEW.backend
      AND s.web_acl = NEW.web_acl AND s.space = NEW.space AND s.kind = NEW.kind)
BEGIN SELECT RAISE(ABORT, 'acl_snapshots: run must name the first snapshot of a run of the same web acl, space and kind'); END;

-- A local Web ACL's version is its lock token: every write moves it up by
-- exactly one, so a writer that read an older version can never write
-- over a newer one unnoticed.
CREATE TRIGGER local_web_acls_version_steps BEFORE UPDATE ON local_web_acls
WHEN NEW.version <> OLD.version + 1 OR NEW.name <> OLD.name
BEGIN SELECT RAISE(ABORT, 'local_web_acls: a write moves the version up by exactly one'); END;

-- A queued CRL is marked delivered once and otherwise never changes, and
-- no row is deleted: a delivery is never undone or forgotten.
CREATE TRIGGER gate_outbox_delivered_once BEFORE UPDATE ON gate_outbox
WHEN OLD.delivered_at IS NOT NULL OR NEW.id <> OLD.id OR NEW.at <> OLD.at
  OR NEW.crl_number <> OLD.crl_number
BEGIN SELECT RAISE(ABORT, 'gate_outbox: a row is only marked delivered, once'); END;
CREATE TRIGGER gate_outbox_no_delete BEFORE DELETE ON gate_outbox
BEGIN SELECT RAISE(ABORT, 'gate_outbox: a row is only marked delivered, once'); END;
