--[[
  Acknowledges jobs the broker accepted: removes them from the in-flight set and deletes their
  entries and tags. A job no longer leased to this claim (its lease was taken over) is left alone.

  KEYS[1]  the in-flight set (id -> lease deadline)
  KEYS[2]  the in-flight entries hash (id -> entry)
  KEYS[3]  id -> failed attempts hash (a sent job's record goes; one EXISTS when no job has one)
  KEYS[4]  the tags hash (id -> JSON array of tags): a sent job's tags go (one EXISTS when no job
           has tags, else one HMGET per 1,000 jobs; only tagged jobs cost more)
  ARGV[1]  key prefix (unused: a claimed job's key is already gone)
  ARGV[2]  the claim token (its lease deadline)
  ARGV[3]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[3] .. tag)
  ARGV[4..] task ids

  Returns how many jobs were acknowledged.
]]
--- @include "leased"
--- @include "tags"
local CHUNK = 1000
local token = tonumber(ARGV[2])
local ids = {}
for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
local leased = leasedTo(KEYS[1], ids, token)
local mine = {}
for n = 1, #ids do
  if leased[n] then mine[#mine + 1] = ids[n] end
end
local attempts = #mine > 0 and redis.call('EXISTS', KEYS[3]) == 1
for k = 1, #mine, CHUNK do
  local last = math.min(k + CHUNK - 1, #mine)
  redis.call('ZREM', KEYS[1], unpack(mine, k, last))
  redis.call('HDEL', KEYS[2], unpack(mine, k, last))
  if attempts then redis.call('HDEL', KEYS[3], unpack(mine, k, last)) end
end
dropTags(KEYS[4], ARGV[3], mine)
return #mine
