--[[
  Moves jobs from the compact tier (includes/cold.lua) into the Redis layout: its key, holding
  the entry expanded, and the index. A claim does this first for the jobs due by its horizon,
  so the claim script finds them as any other; a retag does it for the jobs it names.

  KEYS[1]  the tier's chunks, <cp>cold_chunks
  KEYS[2]  the index, <prefix>scheduled_task_id_by_time
  ARGV[1]  the tier's key prefix <cp>
  ARGV[2]  its bucket count
  ARGV[3]  key prefix (a job's entry is ARGV[3] .. id)
  ARGV[4]  the horizon: jobs due by then are moved, in due order (ignored when ids are given)
  ARGV[5]  at most this many of them
  ARGV[6..] task ids to move whatever their due time (none: by the horizon)

  Returns how many jobs moved.
]]
--- @include "cold"
local cp, buckets, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local function promote(id)
  local due, compact = coldTake(cp, buckets, id)
  if not due then return 0 end
  redis.call('SET', prefix .. id, coldEntry(id, compact))
  redis.call('ZADD', KEYS[2], due, id)
  return 1
end
local moved = 0
if #ARGV >= 6 then
  for i = 6, #ARGV do moved = moved + promote(ARGV[i]) end
  return moved
end
local limit = tonumber(ARGV[5])
while moved < limit do
  local c = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not c then break end
  local due = redis.call('ZRANGEBYSCORE', cp .. 'cold:' .. c, '-inf', ARGV[4], 'LIMIT', 0, limit - moved)
  if #due == 0 then break end
  for _, id in ipairs(due) do moved = moved + promote(id) end
end
return moved
