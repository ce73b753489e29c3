-- Take a channel lease for a call, or name the full limit (lib/admit.lua).
-- A channel is a lease keyed by Call-ID plus one member per limit scope in a
-- sorted set (score = when the lease lapses, ms), so a lost report can only
-- make a lease lapse, never a count stick or go negative.
-- KEYS: lease, trunk_set, org_set, rule_set, rate_window, channel_trunks, leases_kept, ended
-- ARGV: call_id, now_ms, pending_ms, set_ms, trunk_max, org_max, rule_max, rule_id, cps_max, window_ttl_s, trunk_id, lease_doc
--! include lib/admit.lua
return admit(KEYS, ARGV)
