-- The last text sent to a user is the one inserted last, even within one second (SQLite orders
-- by its rowid): a resend right after an undelivered text must show the new text's status.
ALTER TABLE phone_messages ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE INDEX phone_messages_user ON phone_messages (user_id, created_at, seq);
