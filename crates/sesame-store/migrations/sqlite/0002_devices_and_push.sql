-- Devices (the authenticator app), activation codes, replay protection, sign-in challenges.

ALTER TABLE users ADD COLUMN push_blocked_at INTEGER;
ALTER TABLE users ADD COLUMN last_signin_at INTEGER;

CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    public_id     TEXT NOT NULL UNIQUE,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    alg           TEXT NOT NULL,
    public_key    BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    -- A key registers once per tenant: one Sesame account per device per tenant.
    UNIQUE (tenant_id, public_key)
);
CREATE INDEX devices_user ON devices(user_id);

ALTER TABLE methods ADD COLUMN device_id INTEGER REFERENCES devices(id) ON DELETE CASCADE;

CREATE TABLE activation_codes (
    code_hash   BLOB PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    device_id   INTEGER
);

CREATE TABLE device_nonces (
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    nonce       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
);

CREATE TABLE challenges (
    id                  INTEGER PRIMARY KEY,
    public_id           TEXT NOT NULL UNIQUE,
    tenant_id           INTEGER NOT NULL REFERENCES tenants(id),
    user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    signin_id_hash      BLOB NOT NULL,
    kind                TEXT NOT NULL,
    nonce               TEXT NOT NULL,
    number              TEXT NOT NULL,
    state               TEXT NOT NULL,
    app_name            TEXT NOT NULL,
    ip                  TEXT NOT NULL,
    location            TEXT NOT NULL,
    user_agent          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    answered_at         INTEGER,
    answered_by_device  INTEGER
);
CREATE INDEX challenges_user_state ON challenges(user_id, state);
CREATE INDEX challenges_user_created ON challenges(user_id, created_at);
CREATE INDEX challenges_signin ON challenges(signin_id_hash);
