-- Wrong passwords in a row, per scope: an account name as typed (known or not), a browser the
-- user signed in with before, or a client address (sesame_core::guessing). Shared by every node
-- through the database, like the code counters.
CREATE TABLE password_guesses (
    scope            TEXT PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX password_guesses_last ON password_guesses (last_failure_at);
