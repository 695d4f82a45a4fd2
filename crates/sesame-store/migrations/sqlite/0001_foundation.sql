-- Foundation schema. Never edit a landed migration: add a new file.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', 0);

CREATE TABLE users (
    id                 INTEGER PRIMARY KEY,
    tenant_id          INTEGER NOT NULL REFERENCES tenants(id),
    username           TEXT NOT NULL,
    username_key       TEXT NOT NULL,
    display_name       TEXT NOT NULL,
    password_hash      TEXT,
    is_admin           INTEGER NOT NULL DEFAULT 0,
    is_blocked         INTEGER NOT NULL DEFAULT 0,
    default_method_id  INTEGER,
    created_at         INTEGER NOT NULL,
    UNIQUE (tenant_id, username_key)
);

CREATE TABLE groups (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, name_key)
);

CREATE TABLE group_members (
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE methods (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    label           TEXT NOT NULL,
    secret_enc      BLOB,
    -- Highest TOTP step ever accepted: a code is accepted only for a later step, so each code
    -- works once and an older code after a newer one is refused.
    last_totp_step  INTEGER,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER
);
CREATE INDEX methods_user ON methods(user_id);

CREATE TABLE totp_enrollments (
    id          TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_enc  BLOB NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE attempt_counters (
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE signin_transactions (
    id_hash     BLOB PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    username    TEXT NOT NULL,
    state       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    next_path   TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX signin_transactions_expiry ON signin_transactions(expires_at);

CREATE TABLE sessions (
    id_hash          BLOB PRIMARY KEY,
    tenant_id        INTEGER NOT NULL REFERENCES tenants(id),
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    amr              TEXT NOT NULL,
    auth_time        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    idle_expires_at  INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    revoked_at       INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE setup_tokens (
    token_hash  BLOB PRIMARY KEY,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    tenant_id   INTEGER NOT NULL,
    user_id     INTEGER,
    username    TEXT NOT NULL,
    ip          TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    event       TEXT NOT NULL,
    method      TEXT,
    result      TEXT NOT NULL,
    reason      TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_user ON audit_log(user_id, at);
