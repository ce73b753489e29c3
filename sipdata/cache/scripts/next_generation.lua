-- Next generation id: above the last one and at least the wall clock in ms, so
-- ids stay unique when Redis restarts empty (a process still holding "g7" from
-- before must never mistake a new, different g7 for the one it knows).
-- KEYS: sequence
-- ARGV: now_ms
-- Returns the new id.
local sequence = KEYS[1]
local now_ms = ARGV[1]
local n = math.max(tonumber(redis.call('GET', sequence) or '0') + 1, tonumber(now_ms))
redis.call('SET', sequence, n)
return n
