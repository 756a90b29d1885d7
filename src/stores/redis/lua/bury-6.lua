--[[
  Makes claimed jobs dead letters: each still leased to this claim leaves the in-flight set and
  its entry hash, and its record (entry, due time, reason, error, attempts, times, tags) goes into
  the dead letters, so it is never claimed or sent again and never lost. Its attempts record goes.
  Its tags move from the tags hash and the tag SETs into the record: a job added later under the
  same id never mixes them up, and reviving it gives them back.

  KEYS[1]  the in-flight set (id -> lease deadline)
  KEYS[2]  the in-flight entries hash (id -> entry)
  KEYS[3]  the dead letters, hash <prefix>celery_longterm_scheduler:dead (id -> record JSON)
  KEYS[4]  the dead letters by time, sorted set <prefix>celery_longterm_scheduler:dead_by_time
           (id -> when it died)
  KEYS[5]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts
  KEYS[6]  the tags hash, <prefix>celery_longterm_scheduler:tags (id -> JSON array of tags)
  ARGV[1]  the claim token (its lease deadline)
  ARGV[2]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[2] .. tag)
  ARGV[3..] triples: task id, record JSON (an object without tags), when it died (unix seconds)

  A job's tags (its JSON array, as stored) become the record's last member, "tags".
  A key of another type that stood in for the entry (a shared database) is left alone.

  Returns how many jobs were buried (the others are no longer leased to this claim).
]]
--- @include "leased"
--- @include "tags"
local token, tagPrefix = tonumber(ARGV[1]), ARGV[2]
local ids = {}
for i = 3, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end
local leased = leasedTo(KEYS[1], ids, token)
local tagged = redis.call('EXISTS', KEYS[6]) == 1
local n, done = 0, {}
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if leased[(i - 3) / 3 + 1] and not done[id] then
    done[id] = true
    local record = ARGV[i + 1]
    local tags = tagged and redis.call('HGET', KEYS[6], id)
    if tags then
      if #tagsIn(tags) > 0 and record:sub(-1) == '}' then
        record = record:sub(1, -2) .. (record == '{}' and '' or ',') .. '"tags":' .. tags .. '}'
      end
      dropTags(KEYS[6], tagPrefix, {id})
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HSET', KEYS[3], id, record)
    redis.call('ZADD', KEYS[4], ARGV[i + 2], id)
    n = n + 1
  end
end
return n
