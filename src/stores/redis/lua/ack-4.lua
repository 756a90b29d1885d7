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
--- @include "sent"
local token = tonumber(ARGV[2])
local ids = {}
for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
local leased = leasedTo(KEYS[1], ids, token)
local mine = {}
for n = 1, #ids do
  if leased[n] then mine[#mine + 1] = ids[n] end
end
forgetSent(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[3], mine)
return #mine
