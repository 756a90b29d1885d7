--[[
  Adds jobs atomically: every key with its index entry, or nothing.

  KEYS[1]  the index, sorted set <prefix>scheduled_task_id_by_time
  ARGV[1]  key prefix ('' for the original layout)
  ARGV[2..] triplets: task id, due time (unix seconds), entry JSON

  Returns 0 on success, or the first task id that already has a key (nothing is written then).
]]
local prefix = ARGV[1]
for i = 2, #ARGV, 3 do
  if redis.call('EXISTS', prefix .. ARGV[i]) == 1 or redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    return ARGV[i]
  end
end
for i = 2, #ARGV, 3 do
  redis.call('SET', prefix .. ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
return 0
