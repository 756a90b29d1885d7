--[[
  Changes the tags of scheduled jobs (retagMany): a job's new tags are its tags without those
  removed, in order, then those added that it lacks. Its tags hash field and the tag SETs follow:
  the id leaves the SET of each tag it no longer holds and joins the SET of each it holds (an
  untagged result deletes its field). A job that would hold more than ARGV[3] tags is left alone.
  A job not scheduled (unknown, in flight, sent) is not touched. A job the Python package wrote
  (no field in the tags hash) holds no tags before.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  the tags hash, <prefix>celery_longterm_scheduler:tags (id -> JSON array of tags)
  ARGV[1]  key prefix (a job's entry is ARGV[1] .. id)
  ARGV[2]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[2] .. tag)
  ARGV[3]  the most tags a job may hold (MAX_TAGS_PER_JOB)
  ARGV[4]  the tags to add, a JSON array
  ARGV[5]  the tags to remove, a JSON array (none in both)
  ARGV[6..] task ids, each once; the store sends 250 a call (a few milliseconds)

  Returns {changed, overLimit}: the ids retagged, and the ids left alone for the limit.
]]
--- @include "tags"
local prefix, tagPrefix, most = ARGV[1], ARGV[2], tonumber(ARGV[3])
local add, removing = tagsIn(ARGV[4]), {}
for _, tag in ipairs(tagsIn(ARGV[5])) do removing[tag] = true end
local changed, over = {}, {}
for i = 6, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) and redis.call('EXISTS', prefix .. id) == 1 then
    local raw = redis.call('HGET', KEYS[2], id)
    local old = raw and tagsIn(raw) or {}
    local new, holds, held = {}, {}, {}
    for _, tag in ipairs(old) do
      held[tag] = true
      if not removing[tag] then
        new[#new + 1] = tag
        holds[tag] = true
      end
    end
    for _, tag in ipairs(add) do
      if not holds[tag] then
        new[#new + 1] = tag
        holds[tag] = true
      end
    end
    if #new > most then
      over[#over + 1] = id
    else
      for tag in pairs(held) do
        if not holds[tag] then redis.call('SREM', tagPrefix .. tag, id) end
      end
      for _, tag in ipairs(new) do redis.call('SADD', tagPrefix .. tag, id) end
      if #new == 0 then
        redis.call('HDEL', KEYS[2], id)
      else
        redis.call('HSET', KEYS[2], id, cjson.encode(new))
      end
      changed[#changed + 1] = id
    end
  end
end
return {changed, over}
