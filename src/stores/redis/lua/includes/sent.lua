-- Forgets jobs that left for the broker (acknowledged, or handed off in the same script): their
-- in-flight lease, their entry, their failed attempts and their tags. `ids` are ids still leased
-- to this claim. The attempts hash costs one EXISTS when no job has attempts; tags, see tags.lua.
-- Needs the "tags" include.
local function forgetSent(inFlight, entries, attempts, tags, tagPrefix, ids)
  local hasAttempts = #ids > 0 and redis.call('EXISTS', attempts) == 1
  for k = 1, #ids, 1000 do
    local last = math.min(k + 999, #ids)
    redis.call('ZREM', inFlight, unpack(ids, k, last))
    redis.call('HDEL', entries, unpack(ids, k, last))
    if hasAttempts then redis.call('HDEL', attempts, unpack(ids, k, last)) end
  end
  dropTags(tags, tagPrefix, ids)
end
