-- Phone numbers are methods: a mobile number gives a text method and a call method (two rows,
-- one number), an office number gives a call method. The number is sealed in secret_enc like
-- a TOTP secret (the row identity is the associated data); the slot says which phone, so that
-- changing a number changes every method it gives, in one write.
ALTER TABLE methods ADD COLUMN phone_slot TEXT;
ALTER TABLE methods ADD COLUMN extension TEXT;
CREATE UNIQUE INDEX methods_one_per_phone_kind ON methods (user_id, kind) WHERE phone_slot IS NOT NULL;

-- Codes sent by text: one live code per user and purpose (a resend replaces it). Only a keyed
-- hash is kept; number_tag (a keyed hash of the number) binds it to the number it went to.
-- Taking a code is one DELETE ... RETURNING: it works once.
CREATE TABLE phone_codes (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    number_tag  BLOB NOT NULL,
    code_hash   BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
);

-- Texts sent and calls placed, per limit key (a user, a number's tag, a client address): the
-- send limits every node shares. Rows older than the window are pruned.
CREATE TABLE phone_sends (
    limit_key  TEXT NOT NULL,
    sent_at    INTEGER NOT NULL
);
CREATE INDEX phone_sends_by_key ON phone_sends (limit_key, sent_at);

-- Delivery reports of texts handed to a gateway, by Sesame's own reference.
CREATE TABLE phone_messages (
    reference   TEXT PRIMARY KEY,
    user_id     INTEGER REFERENCES users(id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    detail      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The embedded outbox (development only): texts and calls stored instead of sent, read with
-- `sesame outbox` or the development page, where a call can be answered.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    reference    TEXT NOT NULL UNIQUE,
    to_number    TEXT NOT NULL,
    extension    TEXT,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    answered_at  INTEGER
);
