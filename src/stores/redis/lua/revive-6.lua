--[[
  Schedules dead letters again: each whose id no job holds goes back to its key and the index,
  due at the given time, with no attempts and with the tags its record holds; the others stay as
  they are.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set: a job being sent holds its id
  KEYS[3]  the dead letters hash (id -> record JSON)
  KEYS[4]  the dead letters by time (sorted set)
  KEYS[5]  id -> failed attempts hash (a stale record for the id is dropped)
  KEYS[6]  the tags hash (id -> JSON array of tags): the record's tags come back here and into
           their SETs (stale ones left for the id are dropped first)
  ARGV[1]  key prefix
  ARGV[2]  wake-up channel
  ARGV[3]  the due time (unix seconds)
  ARGV[4]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[4] .. tag)
  ARGV[5]  the compact tier's key prefix (includes/cold.lua; an id it holds is taken), '' for none
  ARGV[6]  the compact tier's bucket count
  ARGV[7..] task ids

  Returns one outcome per id: 'scheduled', 'not_dead', 'no_entry' or 'id_taken'.
]]
--- @include "tags"
--- @include "cold"
local prefix, due, tagPrefix = ARGV[1], ARGV[3], ARGV[4]
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out, revived = {}, false
for i = 7, #ARGV do
  local id = ARGV[i]
  local record = redis.call('HGET', KEYS[3], id)
  if not record then
    out[#out + 1] = 'not_dead'
  else
    local ok, decoded = pcall(cjson.decode, record)
    local entry = ok and type(decoded) == 'table' and decoded.entry or nil
    if type(entry) ~= 'string' then
      out[#out + 1] = 'no_entry'
    elseif redis.call('EXISTS', prefix .. id) == 1 or redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) or coldHas(ARGV[5], tonumber(ARGV[6]), id) then
      out[#out + 1] = 'id_taken'
    else
      redis.call('SET', prefix .. id, entry)
      redis.call('ZADD', KEYS[1], due, id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('ZREM', KEYS[4], id)
      redis.call('HDEL', KEYS[5], id)
      dropTags(KEYS[6], tagPrefix, {id})
      if type(decoded.tags) == 'table' then
        local tags = {}
        for _, tag in ipairs(decoded.tags) do
          if type(tag) == 'string' then tags[#tags + 1] = tag end
        end
        if #tags > 0 then writeTags(KEYS[6], tagPrefix, id, cjson.encode(tags)) end
      end
      out[#out + 1] = 'scheduled'
      revived = true
    end
  end
end
if revived and (first[2] == nil or tonumber(due) < tonumber(first[2])) then
  redis.call('PUBLISH', ARGV[2], due)
end
return out
