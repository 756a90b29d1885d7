--[[
  Moves a corrupt claimed job aside so it never blocks dispatch again: the record (its raw
  entry, due time and the reason) goes into a hash, and the job leaves the in-flight set and
  its key.

  KEYS[1]  the in-flight set
  KEYS[2]  the corrupt-job hash, <prefix>celery_longterm_scheduler:corrupt (id -> record JSON)
  ARGV[1]  key prefix
  ARGV[2]  task id
  ARGV[3]  record JSON

  Returns 1 when moved, 0 when the job was no longer in flight.
]]
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('DEL', ARGV[1] .. ARGV[2])
  return 1
end
return 0
