-- Phone sign-in credentials, the remembered sign-in choice, and the authentication methods
-- policy of each tenant.

-- The device's PIN key: its private half is sealed on the phone under a key derived from the
-- app PIN, without an integrity tag, so only this server can tell a wrong PIN (an invalid
-- signature). `pin_key_failures` counts consecutive invalid signatures; at 10 the key is
-- disabled until the user allows it again on My security info.
ALTER TABLE devices ADD COLUMN pin_key BLOB;
ALTER TABLE devices ADD COLUMN pin_key_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN pin_key_disabled_at INTEGER;
ALTER TABLE devices ADD COLUMN phone_sign_in_at INTEGER;

-- 'app' or 'password': what the user chose last, offered first next time.
ALTER TABLE users ADD COLUMN signin_preference TEXT;

CREATE TABLE tenant_policies (
    tenant_id   INTEGER PRIMARY KEY REFERENCES tenants(id),
    policy      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
