--[[
  Deletes a scheduled job for good, the deduplication key it held, its failed attempts and its
  tags. A job that is in flight (claimed by a dispatcher) or already sent is not touched.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  key -> id hash, <prefix>celery_longterm_scheduler:job_keys
  KEYS[3]  id -> key hash, <prefix>celery_longterm_scheduler:job_key_of
  KEYS[4]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts
  KEYS[5]  the tags hash, <prefix>celery_longterm_scheduler:tags (id -> JSON array of tags)
  ARGV[1]  key prefix
  ARGV[2]  task id
  ARGV[3]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[3] .. tag)

  Returns 1 when the job was scheduled and is now deleted, 0 when it was not scheduled.
]]
--- @include "tags"
local id = ARGV[2]
if redis.call('ZREM', KEYS[1], id) == 1 then
  redis.call('DEL', ARGV[1] .. id)
  redis.call('HDEL', KEYS[4], id)
  local key = redis.call('HGET', KEYS[3], id)
  if key then
    redis.call('HDEL', KEYS[3], id)
    if redis.call('HGET', KEYS[2], key) == id then redis.call('HDEL', KEYS[2], key) end
  end
  dropTags(KEYS[5], ARGV[3], {id})
  return 1
end
return 0
