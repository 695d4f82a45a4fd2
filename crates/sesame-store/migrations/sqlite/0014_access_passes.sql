-- Temporary Access Passes: at most one per user (a new one replaces it). Only a keyed hash of
-- the pass is kept. A one-time pass is taken by one DELETE ... RETURNING; a multi-use one
-- stays until it expires or is revoked.
CREATE TABLE access_passes (
    user_id     INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    pass_hash   BLOB NOT NULL,
    one_time    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
