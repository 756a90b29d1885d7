--[[
  Adds jobs atomically: every key with its index entry, or nothing. When a new job is due
  before every job already scheduled, running dispatchers are told on the wake-up channel.

  KEYS[1]  the index, sorted set <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set: a job being sent still holds its id
  ARGV[1]  key prefix ('' for the original layout)
  ARGV[2]  wake-up channel, <prefix>celery_longterm_scheduler:wakeup
  ARGV[3..] triplets: task id, due time (unix seconds), entry JSON

  Returns 0 on success, or the first task id that already has a key (nothing is written then).
]]
local prefix = ARGV[1]
local earliest = nil
for i = 3, #ARGV, 3 do
  if redis.call('EXISTS', prefix .. ARGV[i]) == 1 or redis.call('ZSCORE', KEYS[1], ARGV[i]) or redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    return ARGV[i]
  end
  local due = tonumber(ARGV[i + 1])
  if earliest == nil or due < earliest then earliest = due end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
for i = 3, #ARGV, 3 do
  redis.call('SET', prefix .. ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
if earliest ~= nil and (first[2] == nil or earliest < tonumber(first[2])) then
  redis.call('PUBLISH', ARGV[2], tostring(earliest))
end
return 0
