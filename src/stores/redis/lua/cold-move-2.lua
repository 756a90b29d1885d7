--[[
  Reschedules jobs of the compact tier (includes/cold.lua): each stays in it at its new due time,
  or moves to the Redis layout (its key and the index) when it is due within the hot window or
  its new entry has no compact form. A job not in the tier is left for the Redis layout's own
  scripts. When a job becomes the first due, running dispatchers are told on the wake-up channel.

  KEYS[1]  the tier's chunks, <cp>cold_chunks
  KEYS[2]  the index, <prefix>scheduled_task_id_by_time
  ARGV[1]  the tier's key prefix <cp>
  ARGV[2]  its bucket count
  ARGV[3]  key prefix (a job's entry is ARGV[3] .. id)
  ARGV[4]  wake-up channel
  ARGV[5..] quintuplets: task id, new due time, 'c' to stay compact or 'h' to move, the new entry
           JSON or '' to keep the stored one, and (for 'c' with a new entry) its bucket value

  Returns the ids moved.
]]
--- @include "cold"
local cp, buckets, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local head = earlierHead(redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES'), coldHead(cp))
local moved, earliest, earliestText = {}, nil, nil
for i = 5, #ARGV, 5 do
  local id, due, place, entry, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  -- the key a move out writes, read first (includes/cold.lua's coldReadFirst)
  if place ~= 'c' then redis.call('EXISTS', prefix .. id) end
  local _, compact = coldTake(cp, buckets, id)
  if compact then
    if place == 'c' then
      coldPut(cp, coldBucket(cp, buckets, id), id, due, entry ~= '' and value or (due .. '|' .. compact))
    else
      redis.call('SET', prefix .. id, entry ~= '' and entry or coldEntry(id, compact))
      redis.call('ZADD', KEYS[2], due, id)
    end
    moved[#moved + 1] = id
    if earliest == nil or tonumber(due) < earliest then earliest, earliestText = tonumber(due), due end
  end
end
if earliest ~= nil and (head == nil or head[2] == nil or earliest < tonumber(head[2])) then
  redis.call('PUBLISH', ARGV[4], earliestText)
end
return moved
