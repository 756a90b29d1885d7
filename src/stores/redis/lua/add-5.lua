--[[
  Adds jobs atomically: every key with its index entry and its tags, or nothing. When a new job
  is due before every job already scheduled, running dispatchers are told on the wake-up channel.

  KEYS[1]  the index, sorted set <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set: a job being sent still holds its id
  KEYS[3]  id -> deduplication key hash, <prefix>celery_longterm_scheduler:job_key_of: a job
           added here holds no key, so a stale mapping left for its id (by a process that sent
           or revoked an earlier job of that id without knowing about keys) is dropped
  KEYS[4]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts: a job added
           here has none, so a stale record left for its id is dropped too
  KEYS[5]  the tags hash, <prefix>celery_longterm_scheduler:tags (id -> JSON array of tags): a
           job added here has the tags given with it, so stale ones left for its id are dropped
           first (one EXISTS when no job has tags)
  ARGV[1]  key prefix ('' for the original layout)
  ARGV[2]  wake-up channel, <prefix>celery_longterm_scheduler:wakeup
  ARGV[3]  'reject': a taken id (a key, an index entry, in flight, or twice here) adds nothing;
           'skip': a taken id is left alone (tags and all) and the others are added
  ARGV[4]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[4] .. tag)
  ARGV[5]  the compact tier's key prefix (includes/cold.lua), '' for a store without one
  ARGV[6]  the compact tier's bucket count
  ARGV[7..] quintuplets: task id, due time (unix seconds), entry JSON, tags JSON array ('' for
           none), and where it goes: 'h<b>' to the Redis layout or 'c<b>' to the compact tier (the
           entry is then its bucket value, '<due>|<compact entry>', and it has no tags), b being
           its bucket number there (compact.ts's coldBucket, the same as cold.lua's), or '' when
           the store has no compact tier

  Returns {added, taken}: how many jobs were added, and in 'reject' mode the first taken id
  (then added is 0), else false.
]]
--- @include "tags"
--- @include "cold"
local prefix, skip, tagPrefix, cp, buckets = ARGV[1], ARGV[3] == 'skip', ARGV[4], ARGV[5], tonumber(ARGV[6])
local seen, fresh = {}, {}
local earliest = nil
for i = 7, #ARGV, 5 do
  local id = ARGV[i]
  local bucket = ARGV[i + 4] ~= '' and (cp .. 'cold_bucket:' .. string.sub(ARGV[i + 4], 2)) or nil
  if seen[id] or redis.call('EXISTS', prefix .. id) == 1 or redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) or (bucket and redis.call('HEXISTS', bucket, id) == 1) then
    if not skip then return {0, id} end
  else
    seen[id] = true
    fresh[#fresh + 1] = i
    local due = tonumber(ARGV[i + 1])
    if earliest == nil or due < earliest then earliest = due end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local coldFirst = coldHead(cp)
if coldFirst and coldFirst[2] and (first[2] == nil or tonumber(coldFirst[2]) < tonumber(first[2])) then first = coldFirst end
local cold = {}
for _, i in ipairs(fresh) do
  if string.sub(ARGV[i + 4], 1, 1) == 'c' then
    cold[#cold + 1] = i
  else
    redis.call('SET', prefix .. ARGV[i], ARGV[i + 2])
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  end
end
-- in due order, so that jobs of one chunk follow each other (includes/cold.lua's coldIndex)
local dueOf = {}
for _, i in ipairs(cold) do dueOf[i] = tonumber(ARGV[i + 1]) end
table.sort(cold, function(a, b) return dueOf[a] < dueOf[b] end)
for _, i in ipairs(cold) do coldPut(cp, cp .. 'cold_bucket:' .. string.sub(ARGV[i + 4], 2), ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
local freshIds = {}
for n = 1, #fresh do freshIds[n] = ARGV[fresh[n]] end
for _, side in ipairs({KEYS[3], KEYS[4]}) do
  if #fresh > 0 and redis.call('EXISTS', side) == 1 then
    for k = 1, #freshIds, 1000 do
      redis.call('HDEL', side, unpack(freshIds, k, math.min(k + 999, #freshIds)))
    end
  end
end
dropTags(KEYS[5], tagPrefix, freshIds)
for _, i in ipairs(fresh) do writeTags(KEYS[5], tagPrefix, ARGV[i], ARGV[i + 3]) end
if earliest ~= nil and (first[2] == nil or earliest < tonumber(first[2])) then
  redis.call('PUBLISH', ARGV[2], tostring(earliest))
end
return {#fresh, false}
