-- 0004 (PostgreSQL): the CA's inventory and its CRLs.
CREATE TABLE certs (
    serial            TEXT PRIMARY KEY,
    space             TEXT NOT NULL,
    "user"            TEXT NOT NULL,
    profile           TEXT NOT NULL,
    key_fingerprint   TEXT NOT NULL,
    not_before        TEXT NOT NULL,
    not_after         TEXT NOT NULL,
    issued_at         TEXT NOT NULL,
    signer            TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoked_at        TEXT,
    revocation_reason TEXT,
    pem               TEXT NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX certs_key ON certs(key_fingerprint);
CREATE INDEX certs_account ON certs(space, "user");
CREATE INDEX certs_not_after ON certs(not_after);

CREATE FUNCTION eos_certs_no_unrevoke() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'revoked' AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'a revoked certificate cannot be reinstated' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER certs_no_unrevoke BEFORE UPDATE OF status ON certs
FOR EACH ROW EXECUTE FUNCTION eos_certs_no_unrevoke();

CREATE TABLE crls (
    number      BIGINT PRIMARY KEY,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    pem         TEXT NOT NULL
);
