-- A gateway's status: `active`, `disabled` (refused until enabled again) or `revoked`
-- (refused for good). Every registered gateway so far is active.
ALTER TABLE gateways ADD COLUMN status TEXT NOT NULL DEFAULT 'active';

-- A gateway's key may be revoked (kind `gateway`), so it reaches gateways through the feed.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt, keeping every
-- sequence number. (PostgreSQL: ALTER TABLE revocations DROP CONSTRAINT ..., ADD CHECK.)
CREATE TABLE revocations_new (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('agent', 'mandate', 'human', 'writ', 'key', 'gateway')),
    subject     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    log_index   INTEGER NOT NULL,
    UNIQUE (kind, subject)
);
INSERT INTO revocations_new (seq, kind, subject, reason, created_at, log_index)
    SELECT seq, kind, subject, reason, created_at, log_index FROM revocations;
DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;
