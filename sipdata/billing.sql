-- Credit control (schema version 5, docs/routing-health.md).
-- DEVIATION: current_balance keeps the 4 decimals of cdrs.cost. Each rated
-- call of a credit-controlled org is debited from it; at 2 decimals every
-- debit would round, and a million calls of 0.0012 would cost 0 or 10,000
-- depending on the direction. Widening keeps every stored value.
ALTER TABLE billing_accounts ALTER COLUMN current_balance TYPE DECIMAL(14, 4);
-- Whether an org is credit-controlled (payment_method) is a fact decisions
-- read: captured like organization_settings. The balance and the bookkeeping
-- columns are not (the balance is read by the credit loader every few seconds,
-- and settling a call must not look like an edit).
DROP TRIGGER IF EXISTS sipdata_capture ON billing_accounts;
CREATE TRIGGER sipdata_capture AFTER INSERT OR UPDATE OR DELETE ON billing_accounts
    FOR EACH ROW WHEN (current_setting('sipdata.capture', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION sipdata_capture('org_id', '-current_balance', '-updated_at');
-- A call's usage row, found by its Call-ID (one per call, like its CDR).
CREATE INDEX IF NOT EXISTS usage_records_call ON usage_records ((metadata->>'call_id'));
