-- 0004: the CA's inventory. Every issued certificate, its binding of a key to
-- an account, and its revocation; every CRL issued, so CRL numbers only grow.
CREATE TABLE certs (
    serial            TEXT PRIMARY KEY,            -- lower-case hex, no leading zeros
    space             TEXT NOT NULL,
    user              TEXT NOT NULL,
    profile           TEXT NOT NULL,               -- service | device | cli | browser
    key_fingerprint   TEXT NOT NULL,               -- sha256:<hex> of the DER public key
    not_before        TEXT NOT NULL,               -- RFC 3339 UTC
    not_after         TEXT NOT NULL,
    issued_at         TEXT NOT NULL,
    signer            TEXT NOT NULL,               -- local | the Private CA ARN
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoked_at        TEXT,
    revocation_reason TEXT,
    pem               TEXT NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX certs_key ON certs(key_fingerprint);
CREATE INDEX certs_account ON certs(space, user);
CREATE INDEX certs_not_after ON certs(not_after);

-- A revoked certificate never comes back (no 'certificateHold').
CREATE TRIGGER certs_no_unrevoke BEFORE UPDATE OF status ON certs
WHEN OLD.status = 'revoked'
BEGIN SELECT RAISE(ABORT, 'a revoked certificate cannot be reinstated'); END;

CREATE TABLE crls (
    number      INTEGER PRIMARY KEY,               -- the CRL number, monotonic
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    pem         TEXT NOT NULL
);
