-- Change capture (schema version 3): every committed insert, update and delete
-- of a table decisions read leaves one row in sipdata_changes, written by a
-- trigger in the same transaction as the change, whoever made it (sipdata, an
-- admin tool, plain SQL). sipdata's follower (sipdata/jobs/follow.py) applies
-- the rows to Redis and deletes them; a row is visible only once its
-- transaction commits, so polling the table misses nothing and needs no
-- high-water mark with gaps. NOTIFY only wakes the follower early.
--
-- CockroachDB (23.2+ runs PL/pgSQL; 24.3+ row-level triggers): the same
-- statements run there without the PERFORM pg_notify line (CockroachDB has no
-- LISTEN/NOTIFY; the follower's poll alone then carries the changes), and
-- with `USING btree (prefix)` instead of varchar_pattern_ops (its indexes
-- serve LIKE 'p%' as they are). docs/operations.md, "Freshness", has the
-- changefeed alternative for clusters that cannot run triggers.
CREATE TABLE IF NOT EXISTS sipdata_changes (
    id BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(63) NOT NULL,
    -- I, U, D: a row change; B: a bulk change of a carrier's deck (import-rates
    -- writes its rows with capture off and this one row instead of a million).
    op CHAR(1) NOT NULL,
    old_keys JSONB,
    new_keys JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The WHEN clause skips a bulk write with capture off (import-rates) without
-- calling the function per row at all: a million-row DELETE pays nothing.
-- Arguments: the key columns to record; a name starting with '-' is a column
-- whose change alone is no change for decisions (counters sipdata writes back,
-- bookkeeping timestamps), so the write-back of channel counts every few
-- seconds does not look like an edit.
CREATE OR REPLACE FUNCTION sipdata_capture() RETURNS trigger AS $$
DECLARE
    keep text[] := '{}';
    skip text[] := '{}';
    arg text;
    old_doc jsonb;
    new_doc jsonb;
    old_keys jsonb;
    new_keys jsonb;
BEGIN
    IF current_setting('sipdata.capture', true) = 'off' THEN
        RETURN NULL;
    END IF;
    FOREACH arg IN ARRAY TG_ARGV LOOP
        IF left(arg, 1) = '-' THEN
            skip := skip || substr(arg, 2);
        ELSE
            keep := keep || arg;
        END IF;
    END LOOP;
    IF TG_OP <> 'INSERT' THEN
        old_doc := to_jsonb(OLD);
        SELECT jsonb_object_agg(k, old_doc -> k) INTO old_keys FROM unnest(keep) AS k;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_doc := to_jsonb(NEW);
        SELECT jsonb_object_agg(k, new_doc -> k) INTO new_keys FROM unnest(keep) AS k;
    END IF;
    IF TG_OP = 'UPDATE' AND (old_doc - skip) = (new_doc - skip) THEN
        RETURN NULL;
    END IF;
    INSERT INTO sipdata_changes (table_name, op, old_keys, new_keys)
    VALUES (TG_TABLE_NAME, left(TG_OP, 1), old_keys, new_keys);
    PERFORM pg_notify('sipdata_changes', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS sipdata_capture ON organizations;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON organizations
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('id', '-updated_at');
DROP TRIGGER IF EXISTS sipdata_capture ON organization_settings;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON organization_settings
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('org_id', '-updated_at');
DROP TRIGGER IF EXISTS sipdata_capture ON sip_trunks;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON sip_trunks
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('id', 'org_id', '-channels_in_use', '-updated_at');
DROP TRIGGER IF EXISTS sipdata_capture ON trunk_acl;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON trunk_acl
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('trunk_id');
DROP TRIGGER IF EXISTS sipdata_capture ON phone_numbers;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON phone_numbers
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('number', '-updated_at');
DROP TRIGGER IF EXISTS sipdata_capture ON routing_rules;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON routing_rules
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('org_id', '-updated_at');
DROP TRIGGER IF EXISTS sipdata_capture ON lcr_rates;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON lcr_rates
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('carrier_id', 'prefix');

-- A trunk's change rewrites its DIDs: found by trunk, not by reading every number.
CREATE INDEX IF NOT EXISTS idx_phone_numbers_trunk ON phone_numbers (trunk_id);

-- A row change of a deck recompiles the prefix and the prefixes under it:
-- LIKE 'p%' needs a pattern index to find them without reading the deck.
CREATE INDEX IF NOT EXISTS idx_lcr_rates_prefix_pattern
    ON lcr_rates (prefix varchar_pattern_ops);
