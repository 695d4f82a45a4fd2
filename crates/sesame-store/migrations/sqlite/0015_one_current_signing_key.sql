-- One signing key per algorithm signs at a time, enforced by the database: two nodes using
-- their keys for the first time at the same moment must end with one key, not one each. A
-- rotation retires the old key and adds the new one in one write.
-- A rotation interrupted between adding and retiring (earlier versions wrote them apart) may
-- have left two: the newest stays, the others retire when it was made.
UPDATE oidc_keys SET retired_at = (
    SELECT max(n.created_at) FROM oidc_keys n WHERE n.alg = oidc_keys.alg AND n.retired_at IS NULL
)
WHERE retired_at IS NULL AND EXISTS (
    SELECT 1 FROM oidc_keys n
    WHERE n.alg = oidc_keys.alg AND n.retired_at IS NULL
      AND (n.created_at > oidc_keys.created_at
           OR (n.created_at = oidc_keys.created_at AND n.kid > oidc_keys.kid))
);
CREATE UNIQUE INDEX oidc_keys_one_current ON oidc_keys (alg) WHERE retired_at IS NULL;
