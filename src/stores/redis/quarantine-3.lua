--[[
  Moves a corrupt claimed job aside so it never blocks dispatch again: the record (its raw
  entry, due time and the reason) goes into a hash, and the job leaves the in-flight set and
  its key.

  KEYS[1]  the in-flight set (id -> lease deadline)
  KEYS[2]  the in-flight entries hash (id -> entry)
  KEYS[3]  the corrupt-job hash, <prefix>celery_longterm_scheduler:corrupt (id -> record JSON)
  ARGV[1]  key prefix
  ARGV[2]  the claim token (its lease deadline)
  ARGV[3]  task id
  ARGV[4]  record JSON

  Returns 1 when moved, 0 when the job is no longer leased to this claim.
]]
local id = ARGV[3]
local score = redis.call('ZSCORE', KEYS[1], id)
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HSET', KEYS[3], id, ARGV[4])
  -- a key of another type that stood in for the entry (shared database) is left alone
  return 1
end
return 0
