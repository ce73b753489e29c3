-- The admin API (schema version 4, docs/admin-api.md).
-- DEVIATION: api_keys.org_id may be NULL: a platform key, for the operator
-- that runs sipdata and manages every org; a key with an org sees that org only.
ALTER TABLE api_keys ALTER COLUMN org_id DROP NOT NULL;
-- The key's public prefix (sdk_<prefix>_...): the lookup column, so the stored
-- hash is compared in constant time with the one row it could be, never
-- searched for by value.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS key_prefix VARCHAR(16);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_key_prefix ON api_keys (key_prefix);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMP;
CREATE INDEX IF NOT EXISTS audit_logs_created ON audit_logs (created_at, id);
CREATE INDEX IF NOT EXISTS audit_logs_resource ON audit_logs (resource_type, resource_id);
