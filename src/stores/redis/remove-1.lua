--[[
  Deletes a scheduled job for good. A job that is in flight (claimed by a dispatcher) or
  already sent is not touched.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  ARGV[1]  key prefix
  ARGV[2]  task id

  Returns 1 when the job was scheduled and is now deleted, 0 when it was not scheduled.
]]
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  redis.call('DEL', ARGV[1] .. ARGV[2])
  return 1
end
return 0
