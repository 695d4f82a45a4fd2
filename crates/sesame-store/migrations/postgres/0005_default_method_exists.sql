-- A user's default method is a method that exists. Setting a default checks the method in its
-- own statement and removing a method clears the default that points at it, but under Read
-- Committed each can miss the other when they race, and the default was left on a method that
-- is gone. The foreign key decides instead: a default set on a removed method fails, and a
-- removed method's default is cleared by the removal itself.
-- Both tables are locked first, so that no write of a node still running the older version
-- slips between the clean-up and the constraint's check.
LOCK TABLE users, methods IN SHARE ROW EXCLUSIVE MODE;
UPDATE users SET default_method_id = NULL
 WHERE default_method_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM methods m WHERE m.id = users.default_method_id AND m.user_id = users.id);
-- The removal of a method finds the users whose default it is by this index.
CREATE INDEX users_default_method ON users (default_method_id);
ALTER TABLE users ADD CONSTRAINT users_default_method_fkey
    FOREIGN KEY (default_method_id) REFERENCES methods(id) ON DELETE SET NULL;
