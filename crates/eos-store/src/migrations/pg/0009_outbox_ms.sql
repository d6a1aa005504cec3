-- 0009 (PostgreSQL): outbox times were written in milliseconds from the
-- start on this engine; only the index of pending work per space.
CREATE INDEX outbox_pending_space ON outbox(space, id) WHERE delivered_at IS NULL;
