-- 0009: outbox times in milliseconds. `sync status` reports the lag of a
-- pending change and the syncer the lag of a delivery in milliseconds; with
-- `at` in whole seconds both were overstated by up to a second. Rows written
-- before keep their second (`.000`), so every row has one format and text
-- order stays time order.
UPDATE outbox SET at = substr(at, 1, 19) || '.000Z' WHERE length(at) = 20;
UPDATE outbox SET delivered_at = substr(delivered_at, 1, 19) || '.000Z'
    WHERE length(delivered_at) = 20;

-- The syncer reads pending work space by space (so one refused space never
-- holds back another): the pending rows of each space, by id.
CREATE INDEX outbox_pending_space ON outbox(space, id) WHERE delivered_at IS NULL;
