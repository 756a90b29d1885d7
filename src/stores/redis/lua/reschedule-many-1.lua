--[[
  Moves scheduled jobs to new due times (rescheduleMany): each job in the index is moved, its
  entry, key, tags and attempts kept (they hang on the id, which does not change); one not
  scheduled (unknown, in flight, sent) is not touched. When a job moved here ends up the first
  due, running dispatchers are told on the wake-up channel, as reschedule-1.lua does.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  ARGV[1]  key prefix (a job's entry is ARGV[1] .. id)
  ARGV[2]  wake-up channel
  ARGV[3..] pairs: task id, new due time (unix seconds); each id once; the store sends 500 pairs a
           call (a few milliseconds)

  Returns the ids moved.
]]
local moved, dueOf = {}, {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) and redis.call('EXISTS', ARGV[1] .. id) == 1 then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[i + 1], id)
    moved[#moved + 1] = id
    dueOf[id] = ARGV[i + 1]
  end
end
if #moved > 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)
  if first[1] and dueOf[first[1]] then redis.call('PUBLISH', ARGV[2], dueOf[first[1]]) end
end
return moved
