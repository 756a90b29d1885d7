--[[
  Deletes scheduled jobs for good, each with the deduplication key it held, its failed attempts
  and its tags. A job that is in flight (claimed by a dispatcher) or already sent is not touched.
  Each job is decided on its own: one call may delete some of its ids and leave the others.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  key -> id hash, <prefix>celery_longterm_scheduler:job_keys
  KEYS[3]  id -> key hash, <prefix>celery_longterm_scheduler:job_key_of
  KEYS[4]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts
  KEYS[5]  the tags hash, <prefix>celery_longterm_scheduler:tags (id -> JSON array of tags)
  ARGV[1]  key prefix (a job's entry is ARGV[1] .. id)
  ARGV[2]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[2] .. tag)
  ARGV[3..] task ids (at most 1,000 per call; the store splits larger batches)

  Returns the ids that were scheduled and are now deleted.
]]
--- @include "tags"
local gone = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', ARGV[1] .. id)
    gone[#gone + 1] = id
  end
end
if #gone == 0 then return gone end
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('HDEL', KEYS[4], unpack(gone)) end
if redis.call('EXISTS', KEYS[3]) == 1 then
  local keys = redis.call('HMGET', KEYS[3], unpack(gone))
  for n = 1, #gone do
    local key = keys[n]
    if key then
      redis.call('HDEL', KEYS[3], gone[n])
      if redis.call('HGET', KEYS[2], key) == gone[n] then redis.call('HDEL', KEYS[2], key) end
    end
  end
end
dropTags(KEYS[5], ARGV[2], gone)
return gone
