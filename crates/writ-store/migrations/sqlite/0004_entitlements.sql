-- Entitlements: which tools and data labels a human, or every member of a group, may use.
-- Administrators manage them; a member's agents, grants and calls stay within them.
-- `subject` is a human id or `group:NAME`; `tools` (`server/tool` or `server/*`) and
-- `labels` are JSON arrays of strings.
CREATE TABLE entitlements (
    id          TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    tools       TEXT NOT NULL,
    labels      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    log_index   INTEGER NOT NULL
);
CREATE INDEX entitlements_by_subject ON entitlements (subject);

-- The groups a human belongs to, as administrators (or their identity provider) set them.
CREATE TABLE human_groups (
    human_id    TEXT NOT NULL REFERENCES humans (id),
    group_name  TEXT NOT NULL,
    PRIMARY KEY (human_id, group_name)
);
