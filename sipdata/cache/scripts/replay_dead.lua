-- Dead letters back to the stream they came from, each in one step (so a
-- replay racing another cannot lose an entry; a doubled one is harmless, the
-- drainer's writes are idempotent). An id that is gone, or names a stream not
-- in KEYS, stays where it is.
-- KEYS: dead, dead_index, then per stream: stream
-- ARGV: then per entry: entry_id
-- Returns how many moved.
local dead, dead_index = KEYS[1], KEYS[2]
local moved = 0
for _, id in ipairs(ARGV) do
  local got = redis.call('XRANGE', dead, id, id)
  if #got == 1 then
    local fields, out, target, key = got[1][2], {}, nil, nil
    for i = 1, #fields, 2 do
      local k, v = fields[i], fields[i + 1]
      if k == 'from' then
        for j = 3, #KEYS do
          if KEYS[j] == v then target = v end
        end
      elseif k == 'key' then
        key = v
      elseif k ~= 'why' and k ~= 'at' then
        out[#out + 1] = k
        out[#out + 1] = v
      end
    end
    if target and #out > 0 then
      redis.call('XADD', target, '*', unpack(out))
      redis.call('XDEL', dead, id)
      if key then redis.call('HDEL', dead_index, key) end
      moved = moved + 1
    end
  end
end
return moved
