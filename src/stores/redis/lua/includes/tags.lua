-- Tags of live (scheduled or in-flight) jobs, in two kinds of keys of ours:
--   the tags hash  <prefix>celery_longterm_scheduler:tags    id -> JSON array of its tags
--   one SET a tag  <prefix>celery_longterm_scheduler:tag:<tag>  the ids holding the tag
-- A tag's SET key is only known here: it is `tagPrefix .. tag`, tagPrefix
-- (<prefix>celery_longterm_scheduler:tag:) being passed in ARGV, the way a job's key is
-- `prefix .. id`. An untagged job is in neither; Redis deletes a SET (and the hash) when its last
-- member goes, so a store that never saw a tag has no tag keys at all.

-- The tags a JSON array holds (its strings), or {} when it is not one.
local function tagsIn(json)
  local ok, decoded = pcall(cjson.decode, json)
  local tags = {}
  if ok and type(decoded) == 'table' then
    for _, tag in ipairs(decoded) do
      if type(tag) == 'string' then tags[#tags + 1] = tag end
    end
  end
  return tags
end

-- Gives job `id` the tags of `json` (a JSON array; '' or an empty one: none). The job holds no
-- tags before (`dropTags` first when it may).
local function writeTags(tagsHash, tagPrefix, id, json)
  if json == nil or json == '' then return end
  local tags = tagsIn(json)
  if #tags == 0 then return end
  redis.call('HSET', tagsHash, id, json)
  for _, tag in ipairs(tags) do redis.call('SADD', tagPrefix .. tag, id) end
end

-- Deletes the tags of the jobs `ids`: their fields of the tags hash and their ids in each tag's
-- SET. One EXISTS when no job has tags, else one HMGET per 1,000 ids; only tagged jobs cost more.
local function dropTags(tagsHash, tagPrefix, ids)
  if #ids == 0 or redis.call('EXISTS', tagsHash) == 0 then return end
  for k = 1, #ids, 1000 do
    local last = math.min(k + 999, #ids)
    local held = redis.call('HMGET', tagsHash, unpack(ids, k, last))
    local gone = {}
    for j = 1, #held do
      if held[j] then
        local id = ids[k + j - 1]
        gone[#gone + 1] = id
        for _, tag in ipairs(tagsIn(held[j])) do redis.call('SREM', tagPrefix .. tag, id) end
      end
    end
    if #gone > 0 then redis.call('HDEL', tagsHash, unpack(gone)) end
  end
end
