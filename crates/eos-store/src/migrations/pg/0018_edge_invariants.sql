-- 0018 (PostgreSQL): the enforce and certificate-gate tables' invariants,
-- kept by the database for every instance. Writers hold the store's write
-- lock (see db.rs), so a check and its insert cannot interleave with
-- another writer's.

-- Snapshot ids only grow, and a snapshot's run names the first snapshot
-- of its run (its own id, or an earlier run start of the same Web ACL,
-- space and kind).
CREATE FUNCTION eos_acl_snapshots_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <= (SELECT MAX(id) FROM acl_snapshots) THEN
        RAISE EXCEPTION 'acl_snapshots: id must exceed the last snapshot''s' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.run <> NEW.id AND NOT EXISTS (
        SELECT 1 FROM acl_snapshots s
        WHERE s.id = NEW.run AND s.run = s.id AND s.backend = NEW.backend
          AND s.web_acl = NEW.web_acl AND s.space = NEW.space AND s.kind = NEW.kind) THEN
        RAISE EXCEPTION 'acl_snapshots: run must name the first snapshot of a run of the same web acl, space and kind'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER acl_snapshots_insert BEFORE INSERT ON acl_snapshots
FOR EACH ROW EXECUTE FUNCTION eos_acl_snapshots_insert();

-- A local Web ACL's version is its lock token: every write moves it up by
-- exactly one.
CREATE FUNCTION eos_local_web_acls_version_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version <> OLD.version + 1 OR NEW.name <> OLD.name THEN
        RAISE EXCEPTION 'local_web_acls: a write moves the version up by exactly one' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER local_web_acls_version_steps BEFORE UPDATE ON local_web_acls
FOR EACH ROW EXECUTE FUNCTION eos_local_web_acls_version_steps();

-- A queued CRL is marked delivered once and otherwise never changes, and
-- no row is deleted.
CREATE FUNCTION eos_gate_outbox_delivered_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.delivered_at IS NOT NULL OR NEW.id <> OLD.id OR NEW.at <> OLD.at
       OR NEW.crl_number <> OLD.crl_number THEN
        RAISE EXCEPTION 'gate_outbox: a row is only marked delivered, once' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER gate_outbox_delivered_once BEFORE UPDATE ON gate_outbox
FOR EACH ROW EXECUTE FUNCTION eos_gate_outbox_delivered_once();
CREATE TRIGGER gate_outbox_no_delete BEFORE DELETE ON gate_outbox
FOR EACH ROW EXECUTE FUNCTION eos_refuse('gate_outbox: a row is only marked delivered, once');
CREATE TRIGGER gate_outbox_no_truncate BEFORE TRUNCATE ON gate_outbox
FOR EACH STATEMENT EXECUTE FUNCTION eos_refuse('gate_outbox: a row is only marked delivered, once');
