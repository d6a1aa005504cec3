-- 0012: the certificate gate in enforce snapshots. When enforce moves the
-- ALB listener of a space (`[[gate.listeners]]`), every snapshot of the run
-- also holds that listener's MutualAuthentication and its trust store (ARN,
-- bundle object, CRL number, revocation ids) as JSON
-- (`eos_policy::edge::GateSnapshot`); NULL when no listener was involved.
ALTER TABLE acl_snapshots ADD COLUMN gate TEXT;
