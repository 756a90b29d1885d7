--[[
  Adds one job under a deduplication key, atomically (see ScheduleStore.addKeyed).

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set: a job being sent still holds its id
  KEYS[3]  key -> id of the scheduled job holding it, hash <prefix>celery_longterm_scheduler:job_keys
  KEYS[4]  id -> the key it holds, hash <prefix>celery_longterm_scheduler:job_key_of
  KEYS[5]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts (a new job has
           none; a replaced one takes its record with it)
  KEYS[6]  the tags hash, <prefix>celery_longterm_scheduler:tags (id -> JSON array of tags): the
           new job has the tags given with it (stale ones left for its id are dropped first); a
           replaced one takes its tags with it
  ARGV[1]  key prefix ('' for the original layout)
  ARGV[2]  wake-up channel
  ARGV[3]  the deduplication key
  ARGV[4]  'reject', 'keep' or 'replace': what to do when a scheduled job holds the key
  ARGV[5]  task id
  ARGV[6]  due time (unix seconds)
  ARGV[7]  entry JSON (stored as is: the mapping lives in our own hashes, never in the entry)
  ARGV[8]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[8] .. tag)
  ARGV[9]  the new job's tags, a JSON array ('' for none; our own keys, never the entry)
  ARGV[10] the compact tier's key prefix (includes/cold.lua; an id it holds is taken), '' for none
  ARGV[11] the compact tier's bucket count

  A mapping is trusted only while its holder is still in the index and maps back to the key:
  a job sent or revoked by something that does not know about keys (the Python package's
  dispatcher, an older version of this one) leaves a stale mapping, which counts as free.

  Returns {outcome, id}: 'added' (id: the new job), 'replaced' (id: the job removed), 'kept' or
  'taken' (id: the holder; nothing changed), or 'duplicate' (id: the new job's id is taken;
  nothing changed).
]]
--- @include "tags"
--- @include "cold"
local prefix, key, mode, id, tagPrefix = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[8]
local holder = redis.call('HGET', KEYS[3], key)
if holder and not (redis.call('ZSCORE', KEYS[1], holder) and redis.call('HGET', KEYS[4], holder) == key) then
  if redis.call('HGET', KEYS[4], holder) == key then redis.call('HDEL', KEYS[4], holder) end
  holder = false
end
if holder then
  if mode == 'keep' then return {'kept', holder} end
  if mode ~= 'replace' then return {'taken', holder} end
end
if holder ~= id and (redis.call('EXISTS', prefix .. id) == 1 or redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) or coldHas(ARGV[10], tonumber(ARGV[11]), id)) then
  return {'duplicate', id}
end
if holder then
  redis.call('ZREM', KEYS[1], holder)
  redis.call('DEL', prefix .. holder)
  redis.call('HDEL', KEYS[4], holder)
  redis.call('HDEL', KEYS[5], holder)
  dropTags(KEYS[6], tagPrefix, {holder})
end
redis.call('HDEL', KEYS[5], id)
if holder ~= id then dropTags(KEYS[6], tagPrefix, {id}) end
writeTags(KEYS[6], tagPrefix, id, ARGV[9])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
redis.call('SET', prefix .. id, ARGV[7])
redis.call('ZADD', KEYS[1], ARGV[6], id)
redis.call('HSET', KEYS[3], key, id)
redis.call('HSET', KEYS[4], id, key)
if first[2] == nil or tonumber(ARGV[6]) < tonumber(first[2]) then
  redis.call('PUBLISH', ARGV[2], ARGV[6])
end
if holder then return {'replaced', holder} end
return {'added', id}
