--[[
  Claims due jobs for one dispatcher: moves them from the index into the in-flight set with a
  lease deadline and this claim's token, so no other dispatcher can claim them until the lease
  ends. Jobs whose lease ended (their dispatcher died) are claimed again first.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set, <prefix>celery_longterm_scheduler:in_flight (id -> lease deadline)
  KEYS[3]  the lease owners, hash <prefix>celery_longterm_scheduler:lease (id -> claim token)
  ARGV[1]  key prefix
  ARGV[2]  claim jobs due at or before this time (unix seconds)
  ARGV[3]  now (unix seconds): leases that ended at or before it are expired
  ARGV[4]  the most jobs to claim
  ARGV[5]  the lease deadline for this claim (unix seconds)
  ARGV[6]  this claim's token

  Returns a flat array: id, due time, entry (nil when the key is missing), repeated.
  A re-claimed job reports its old lease deadline as its due time (its real due time has passed).
]]
local prefix, limit, deadline, token = ARGV[1], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local out = {}
-- A key of another type (a shared database) must not abort the script half-way: read it as missing.
local function entry(id)
  local v = redis.pcall('GET', prefix .. id)
  if type(v) == 'table' then return false end
  return v
end
local function take(id, due)
  redis.call('ZADD', KEYS[2], deadline, id)
  redis.call('HSET', KEYS[3], id, token)
  out[#out + 1] = id
  out[#out + 1] = due
  out[#out + 1] = entry(id)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #expired, 2 do
  take(expired[i], expired[i + 1])
end
local room = limit - #expired / 2
if room > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, room)
  for i = 1, #due, 2 do
    redis.call('ZREM', KEYS[1], due[i])
    take(due[i], due[i + 1])
  end
end
return out
