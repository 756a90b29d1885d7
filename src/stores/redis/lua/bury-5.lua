--[[
  Makes claimed jobs dead letters: each still leased to this claim leaves the in-flight set and
  its entry hash, and its record (entry, due time, reason, error, attempts, times) goes into the
  dead letters, so it is never claimed or sent again and never lost. Its attempts record goes.

  KEYS[1]  the in-flight set (id -> lease deadline)
  KEYS[2]  the in-flight entries hash (id -> entry)
  KEYS[3]  the dead letters, hash <prefix>celery_longterm_scheduler:dead (id -> record JSON)
  KEYS[4]  the dead letters by time, sorted set <prefix>celery_longterm_scheduler:dead_by_time
           (id -> when it died)
  KEYS[5]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts
  ARGV[1]  the claim token (its lease deadline)
  ARGV[2..] triples: task id, record JSON, when it died (unix seconds)

  A key of another type that stood in for the entry (a shared database) is left alone.

  Returns how many jobs were buried (the others are no longer leased to this claim).
]]
--- @include "leased"
local token = tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end
local leased = leasedTo(KEYS[1], ids, token)
local n, done = 0, {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if leased[(i - 2) / 3 + 1] and not done[id] then
    done[id] = true
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HSET', KEYS[3], id, ARGV[i + 1])
    redis.call('ZADD', KEYS[4], ARGV[i + 2], id)
    n = n + 1
  end
end
return n
