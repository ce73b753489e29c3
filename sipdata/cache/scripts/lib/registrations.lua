-- {trunk id, registration ('' = none), ...} of the given trunks: the value of
-- `<prefix><trunk id>` (keys.registration, the prefix passed in by Python).
local function registrations(prefix, ids)
  local regs = {}
  for _, id in ipairs(ids) do
    regs[#regs + 1] = id
    regs[#regs + 1] = redis.call('GET', prefix .. id) or ''
  end
  return regs
end
