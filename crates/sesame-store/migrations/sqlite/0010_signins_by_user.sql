-- A sign-in transaction names its user once the username or the password step found one: a
-- new password ends the half-finished sign-ins of the user (a guesser who passed the old
-- password must not finish with a code afterwards).
ALTER TABLE signin_transactions ADD COLUMN user_id INTEGER;
CREATE INDEX signin_transactions_user ON signin_transactions (user_id);
