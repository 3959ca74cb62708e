-- Writ's data model. Times are Unix seconds. Lists are JSON arrays of strings.

CREATE TABLE humans (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'offboarded')),
    oidc_issuer   TEXT,
    oidc_subject  TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (oidc_issuer, oidc_subject)
);

-- Keys humans (and administrators) authenticate with, by RFC 7638 thumbprint.
CREATE TABLE human_keys (
    jkt         TEXT PRIMARY KEY,
    human_id    TEXT NOT NULL REFERENCES humans (id),
    jwk         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE agents (
    jkt            TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    owner          TEXT NOT NULL REFERENCES humans (id),
    jwk            TEXT NOT NULL,
    tools          TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'retired')),
    status_reason  TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_seen      INTEGER
);

CREATE TABLE tool_providers (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('mcp', 'http')),
    url         TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tools (
    server  TEXT NOT NULL REFERENCES tool_providers (name),
    name    TEXT NOT NULL,
    labels  TEXT NOT NULL,
    PRIMARY KEY (server, name)
);

CREATE TABLE gateways (
    jkt         TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    audience    TEXT NOT NULL,
    jwk         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE mandates (
    id           TEXT PRIMARY KEY,
    human_id     TEXT NOT NULL REFERENCES humans (id),
    agent_jkt    TEXT NOT NULL REFERENCES agents (jkt),
    parent       TEXT REFERENCES mandates (id),
    depth        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    task_digest  TEXT NOT NULL,
    task_text    TEXT,
    created_at   INTEGER NOT NULL,
    log_index    INTEGER NOT NULL
);
CREATE INDEX mandates_by_parent ON mandates (parent);
CREATE INDEX mandates_by_human ON mandates (human_id);
CREATE INDEX mandates_by_agent ON mandates (agent_jkt);

-- Revocations, in feed order. A subject is revoked once.
CREATE TABLE revocations (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('agent', 'mandate', 'human', 'writ', 'key')),
    subject     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    log_index   INTEGER NOT NULL,
    UNIQUE (kind, subject)
);

-- The audit log: one row per Merkle leaf, in order.
CREATE TABLE audit_leaves (
    idx         INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Lookup keys into the log, such as `writ:wrt_...` or `mandate:mnd_...`.
CREATE TABLE audit_keys (
    key  TEXT NOT NULL,
    idx  INTEGER NOT NULL REFERENCES audit_leaves (idx),
    PRIMARY KEY (key, idx)
);

-- Hashes of complete Merkle subtrees: (level, index) covers leaves
-- [index << level, (index + 1) << level).
CREATE TABLE merkle_nodes (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP signed notes), by tree size.
CREATE TABLE checkpoints (
    size        INTEGER PRIMARY KEY,
    note        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
