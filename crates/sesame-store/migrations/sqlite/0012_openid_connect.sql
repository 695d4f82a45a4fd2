-- OpenID Connect: the keys that sign tokens, the applications (clients), authorization codes,
-- refresh token families, revoked access tokens and remembered consent.

-- A signing key's private half is sealed with the master key (associated data: its kid). A
-- retired key signs nothing more but stays published until its overlap ends, so tokens it
-- signed keep verifying.
CREATE TABLE oidc_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_key  BLOB NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER
);

-- A client secret is high-entropy, so a fast hash (SHA-256) is as strong as a slow one; NULL
-- for a public client (PKCE only). URI lists are JSON arrays, matched exactly.
CREATE TABLE oidc_clients (
    client_id                   TEXT PRIMARY KEY,
    tenant_id                   INTEGER NOT NULL REFERENCES tenants(id),
    name                        TEXT NOT NULL,
    secret_hash                 BLOB,
    redirect_uris               TEXT NOT NULL,
    post_logout_redirect_uris   TEXT NOT NULL,
    first_party                 INTEGER NOT NULL DEFAULT 0,
    require_mfa                 INTEGER NOT NULL DEFAULT 0,
    id_token_alg                TEXT NOT NULL DEFAULT 'RS256',
    client_credentials          INTEGER NOT NULL DEFAULT 0,
    created_at                  INTEGER NOT NULL,
    secret_set_at               INTEGER
);

-- Everything a code or a refresh token grants (user, scope, nonce, how they signed in) is one
-- JSON document, written once.
--
-- A family is what one authorization code issued: its refresh tokens (each rotation adds one)
-- and the access tokens that name it. Revoking the family (a code replayed, a refresh token
-- reused, a sign-out) ends all of them.
CREATE TABLE oidc_families (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oidc_clients(client_id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX oidc_families_user ON oidc_families (user_id);

CREATE TABLE oidc_codes (
    code_hash   BLOB PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oidc_clients(client_id) ON DELETE CASCADE,
    grant_json  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    family      TEXT
);
CREATE INDEX oidc_codes_expiry ON oidc_codes (expires_at);

CREATE TABLE oidc_refresh_tokens (
    token_hash  BLOB PRIMARY KEY,
    family      TEXT NOT NULL REFERENCES oidc_families(id) ON DELETE CASCADE,
    grant_json  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX oidc_refresh_tokens_family ON oidc_refresh_tokens (family);

-- Access tokens are signed and checked without the database; the few revoked before they
-- expire (RFC 7009) are listed here until then.
CREATE TABLE oidc_revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE oidc_consents (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES oidc_clients(client_id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
