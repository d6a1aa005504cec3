-- 0012 (PostgreSQL): the certificate gate in enforce snapshots: the ALB
-- listener's MutualAuthentication and its trust store as JSON
-- (`eos_policy::edge::GateSnapshot`); NULL when no listener was involved.
ALTER TABLE acl_snapshots ADD COLUMN gate TEXT;
