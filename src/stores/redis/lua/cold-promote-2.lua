--[[
  Moves jobs from the compact tier (includes/cold.lua) into the Redis layout: its key, holding
  the entry expanded, and the index. A claim does this first for the jobs due by its horizon,
  so the claim script finds them as any other; a retag does it for the jobs it names.

  KEYS[1]  the tier's chunks, <cp>cold_chunks
  KEYS[2]  the index, <prefix>scheduled_task_id_by_time
  ARGV[1]  the tier's key prefix <cp>
  ARGV[2]  its bucket count
  ARGV[3]  key prefix (a job's entry is ARGV[3] .. id)
  ARGV[4]  the horizon: jobs due by then are moved, in due order (ignored when ids are given)
  ARGV[5]  at most this many of them
  ARGV[6..] task ids to move whatever their due time (none: by the horizon)

  Returns how many jobs moved.
]]
--- @include "cold"
local cp, buckets, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if #ARGV < 6 then return coldPromoteDue(cp, buckets, prefix, KEYS[2], ARGV[4], tonumber(ARGV[5])) end
local moved = 0
for i = 6, #ARGV do moved = moved + coldPromote(cp, buckets, prefix, KEYS[2], ARGV[i]) end
return moved
