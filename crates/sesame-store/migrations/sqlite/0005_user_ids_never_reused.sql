-- User ids are never handed out again: the audit log keeps a removed user's lines by id, and
-- they must never become the lines of the next user created. SQLite reuses the highest id of a
-- plain INTEGER PRIMARY KEY after that row is deleted; AUTOINCREMENT does not. The table is
-- rebuilt (the migration runs with foreign keys off, and checks them before it commits).
CREATE TABLE users_new (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id          INTEGER NOT NULL REFERENCES tenants(id),
    username           TEXT NOT NULL,
    username_key       TEXT NOT NULL,
    display_name       TEXT NOT NULL,
    password_hash      TEXT,
    is_admin           INTEGER NOT NULL DEFAULT 0,
    is_blocked         INTEGER NOT NULL DEFAULT 0,
    default_method_id  INTEGER,
    created_at         INTEGER NOT NULL,
    push_blocked_at    INTEGER,
    last_signin_at     INTEGER,
    signin_preference  TEXT,
    UNIQUE (tenant_id, username_key)
);
INSERT INTO users_new (id, tenant_id, username, username_key, display_name, password_hash, is_admin,
                       is_blocked, default_method_id, created_at, push_blocked_at, last_signin_at,
                       signin_preference)
    SELECT id, tenant_id, username, username_key, display_name, password_hash, is_admin, is_blocked,
           default_method_id, created_at, push_blocked_at, last_signin_at, signin_preference
    FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
-- Ids of users removed before this migration are not handed out again either: the next id
-- comes after every id the users table or the audit log has seen.
DELETE FROM sqlite_sequence WHERE name IN ('users', 'users_new');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'users', MAX(x) FROM (
        SELECT COALESCE(MAX(id), 0) AS x FROM users
        UNION ALL SELECT COALESCE(MAX(user_id), 0) FROM audit_log
    );
