--[[
  Moves a scheduled job to a new due time, and optionally replaces its entry, in one step.
  A job that is not scheduled (unknown, in flight, sent) is not touched. When the job becomes
  the first due, running dispatchers are told on the wake-up channel.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  ARGV[1]  key prefix
  ARGV[2]  wake-up channel
  ARGV[3]  task id
  ARGV[4]  new due time (unix seconds)
  ARGV[5]  new entry JSON, or '' to keep the stored one

  Returns 1 when the job was moved, 0 when it was not scheduled.
]]
local id = ARGV[3]
if not redis.call('ZSCORE', KEYS[1], id) or redis.call('EXISTS', ARGV[1] .. id) == 0 then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], id)
if ARGV[5] ~= '' then redis.call('SET', ARGV[1] .. id, ARGV[5]) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if first[1] == id then redis.call('PUBLISH', ARGV[2], ARGV[4]) end
return 1
