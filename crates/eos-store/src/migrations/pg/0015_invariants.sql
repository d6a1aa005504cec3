-- 0015 (PostgreSQL): CRL numbers strictly increase, and a key is certified
-- for one account only — kept by the database for every instance. Writers
-- hold the store's write lock (see db.rs), so the check and the insert
-- cannot interleave with another writer's.
CREATE FUNCTION eos_crls_increasing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.number <= (SELECT MAX(number) FROM crls) THEN
        RAISE EXCEPTION 'crls: number must exceed the last issued' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER crls_increasing BEFORE INSERT OR UPDATE ON crls
FOR EACH ROW EXECUTE FUNCTION eos_crls_increasing();

CREATE FUNCTION eos_certs_key_one_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM certs WHERE key_fingerprint = NEW.key_fingerprint
               AND (space <> NEW.space OR "user" <> NEW."user")) THEN
        RAISE EXCEPTION 'certs: key is certified for another account' USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER certs_key_one_account BEFORE INSERT ON certs
FOR EACH ROW EXECUTE FUNCTION eos_certs_key_one_account();
