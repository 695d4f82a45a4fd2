-- One signing key per algorithm signs at a time, enforced by the database: two nodes using
-- their keys for the first time at the same moment must end with one key, not one each (the
-- loser's insert does nothing and it reads the winner's). A rotation retires the old key and
-- adds the new one in one transaction.
CREATE UNIQUE INDEX oidc_keys_one_current ON oidc_keys (alg) WHERE retired_at IS NULL;
