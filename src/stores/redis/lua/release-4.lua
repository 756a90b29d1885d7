--[[
  Gives claimed jobs back: moves them from the in-flight set to the index, for a later dispatch.
  Used when the broker could not be reached, on shutdown (due time and attempts unchanged), and
  when the broker refused a job (due at its next attempt, with its attempts recorded).
  A job no longer leased to this claim is left alone.

  KEYS[1]  the index
  KEYS[2]  the in-flight set (id -> lease deadline)
  KEYS[3]  the in-flight entries hash (id -> entry)
  KEYS[4]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts
  ARGV[1]  key prefix
  ARGV[2]  the claim token (its lease deadline)
  ARGV[3..] triples: task id, due time (unix seconds), attempts record JSON ('' to leave it as is)

  The entry goes back to its key, so the job is stored exactly as before it was claimed.

  Returns how many jobs were released.
]]
--- @include "leased"
local token = tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end
local leased = leasedTo(KEYS[2], ids, token)
local n, done = 0, {}
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if leased[(i - 3) / 3 + 1] and not done[id] then
    done[id] = true
    local entry = redis.call('HGET', KEYS[3], id)
    if entry then redis.call('SET', ARGV[1] .. id, entry) end
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[1], ARGV[i + 1], id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[4], id, ARGV[i + 2]) end
    n = n + 1
  end
end
return n
