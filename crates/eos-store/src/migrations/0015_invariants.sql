-- 0015: two invariants the code already kept, now kept by the database for
-- every writer (several instances share one PostgreSQL; the same rules hold
-- on SQLite): CRL numbers strictly increase, and a key is certified for one
-- account only.
CREATE TRIGGER crls_increasing BEFORE INSERT ON crls
WHEN NEW.number <= (SELECT MAX(number) FROM crls)
BEGIN SELECT RAISE(ABORT, 'crls: number must exceed the last issued'); END;

CREATE TRIGGER certs_key_one_account BEFORE INSERT ON certs
WHEN EXISTS (SELECT 1 FROM certs WHERE key_fingerprint = NEW.key_fingerprint
             AND (space <> NEW.space OR "user" <> NEW."user"))
BEGIN SELECT RAISE(ABORT, 'certs: key is certified for another account'); END;
