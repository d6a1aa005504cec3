-- 0008 (PostgreSQL): the sync watcher asks on every poll which spaces have rules that
-- expired since its last pass. Without an index that read every rule; with
-- this one it reads only the rules that expire in the window.
CREATE INDEX rules_expires ON rules(expires) WHERE expires IS NOT NULL;
