--[[
  Reads the compact tier (includes/cold.lua) in due order: the jobs due in [start, to] after the
  cursor, at most `count`. Read only; the chunks are read a few at a time, a page of at most
  `count` members each (a chunk of jobs all due at one time can be large).

  KEYS[1]  the tier's chunks, <cp>cold_chunks
  ARGV[1]  the tier's key prefix <cp>
  ARGV[2]  its bucket count
  ARGV[3]  start: the least due time ('-inf' for none), as ZRANGEBYSCORE takes it
  ARGV[4]  to: the greatest ('+inf' for none)
  ARGV[5]  the cursor's due time, '' for none (it is then >= start: jobs due then come after
           the cursor's id only)
  ARGV[6]  the cursor's id
  ARGV[7]  count
  ARGV[8]  '1' to return each job's bucket value too

  Returns triplets: id, due time, bucket value ('' unless asked).
]]
--- @include "cold"
local cp, buckets, start, to = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local afterDue, afterId, count, values = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8] == '1'
local cursor = afterDue ~= '' and tonumber(afterDue) or nil
-- a <= b in byte order (the sorted sets' order of members due at one time)
local function notAfter(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end
local chunks = KEYS[1]
local out, n = {}, 0
-- the chunk holding start, then the chunks after it
local queue = {}
local first = start ~= '-inf' and redis.call('ZREVRANGEBYSCORE', chunks, start, '-inf', 'WITHSCORES', 'LIMIT', 0, 1) or {}
local lastLo
if first[1] then
  queue[1] = first[1]
  lastLo = first[2]
end
local function refill()
  local got = redis.call('ZRANGEBYSCORE', chunks, lastLo and ('(' .. lastLo) or '-inf', to, 'WITHSCORES', 'LIMIT', 0, 16)
  for i = 1, #got, 2 do
    queue[#queue + 1] = got[i]
    lastLo = got[i + 1]
  end
  return #got > 0
end
while n < count do
  if #queue == 0 and not refill() then break end
  local key = cp .. 'cold:' .. table.remove(queue, 1)
  local offset = 0
  if cursor ~= nil then
    -- the cursor's own chunk: start right after the cursor's id when it is still there
    local at = redis.call('ZSCORE', key, afterId)
    if at and tonumber(at) == cursor then offset = redis.call('ZRANK', key, afterId) + 1 - redis.call('ZCOUNT', key, '-inf', '(' .. start) end
  end
  while n < count do
    local page = redis.call('ZRANGEBYSCORE', key, start, to, 'WITHSCORES', 'LIMIT', offset, count - n)
    if #page == 0 then break end
    offset = offset + #page / 2
    for i = 1, #page, 2 do
      local id, due = page[i], page[i + 1]
      if not (cursor ~= nil and tonumber(due) == cursor and notAfter(id, afterId)) then
        out[#out + 1] = id
        out[#out + 1] = due
        out[#out + 1] = values and (redis.call('HGET', coldBucket(cp, buckets, id), id) or '') or ''
        n = n + 1
      end
    end
  end
  cursor = nil
end
return out
