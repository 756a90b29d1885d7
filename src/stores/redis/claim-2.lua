--[[
  Claims due jobs for one dispatcher: moves them from the index into the in-flight set with a
  lease deadline, so no other dispatcher can claim them until the lease ends. Jobs whose lease
  ended (their dispatcher died) are claimed again first.

  The lease deadline doubles as the claim's token: a later claim of the same job always has a
  strictly greater deadline (it happens at or after the old deadline), so ZSCORE(id) == token
  proves the caller still holds the job.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set, <prefix>celery_longterm_scheduler:in_flight (id -> lease deadline)
  ARGV[1]  key prefix
  ARGV[2]  claim jobs due at or before this time (unix seconds)
  ARGV[3]  now (unix seconds): leases that ended at or before it are expired
  ARGV[4]  the most jobs to claim
  ARGV[5]  the lease deadline for this claim (unix seconds): its token

  Returns a flat array: id, due time, entry (nil when the key is missing or not a string), repeated.
  A re-claimed job reports its old lease deadline as its due time (its real due time has passed).

  Commands are variadic, one per batch and not one per job, in chunks that stay below Lua's
  unpack() limit.
]]
local prefix, limit, deadline = ARGV[1], tonumber(ARGV[4]), ARGV[5]
local CHUNK = 1000

local function variadic(cmd, key, args)
  for i = 1, #args, CHUNK do
    redis.call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
  end
end

local ids, dues = {}, {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #expired, 2 do
  ids[#ids + 1] = expired[i]
  dues[#dues + 1] = expired[i + 1]
end
local room = limit - #ids
if room > 0 then
  -- Due jobs are the head of the index, so they leave it as one rank range: far cheaper in a
  -- large index than removing each member (a skiplist search from the top for every job).
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, room)
  for i = 1, #due, 2 do
    ids[#ids + 1] = due[i]
    dues[#dues + 1] = due[i + 1]
  end
  if #due > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due / 2 - 1) end
end
if #ids == 0 then return {} end

local leased, keys = {}, {}
for i, id in ipairs(ids) do
  leased[#leased + 1] = deadline
  leased[#leased + 1] = id
  keys[i] = prefix .. id
end
variadic('ZADD', KEYS[2], leased)

local out = {}
for i = 1, #keys, CHUNK do
  -- MGET reads a key of another type (a shared database) as nil instead of failing
  local values = redis.call('MGET', unpack(keys, i, math.min(i + CHUNK - 1, #keys)))
  for k = 1, #values do
    local n = i + k - 1
    out[#out + 1] = ids[n]
    out[#out + 1] = dues[n]
    out[#out + 1] = values[k]
  end
end
return out
