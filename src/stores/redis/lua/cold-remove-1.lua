--[[
  Deletes jobs of the compact tier for good (includes/cold.lua). A compact job holds no key, tags
  or attempts (an add drops any left for its id), so nothing else changes.

  KEYS[1]  the tier's chunks, <cp>cold_chunks
  ARGV[1]  the tier's key prefix <cp>
  ARGV[2]  its bucket count
  ARGV[3..] task ids

  Returns the ids that were in the tier and are now deleted.
]]
--- @include "cold"
local cp, buckets = ARGV[1], tonumber(ARGV[2])
local gone = {}
for i = 3, #ARGV do
  if coldTake(cp, buckets, ARGV[i]) then gone[#gone + 1] = ARGV[i] end
end
return gone
