-- Lease documents (the routed call's destinations, for rating its CDR) land
-- after the decision answered, many per call. A lease already gone (released,
-- lapsed) is not brought back.
-- KEYS: then per call: lease
-- ARGV: then per call: lease_doc
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], 'doc', ARGV[i]) end
end
return #KEYS
