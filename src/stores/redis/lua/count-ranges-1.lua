--[[
  Counts the members of a sorted set (the index) in each of many score ranges: a histogram's
  buckets, one ZCOUNT each (O(log N)), without a round trip or a reply per bucket. Read only.

  KEYS[1]  the sorted set
  ARGV[1..] pairs: min, max, as ZCOUNT takes them ('(' for an exclusive bound); the store
           sends 250 pairs a call (about a millisecond)

  Returns the count of each range, in order.
]]
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = redis.call('ZCOUNT', KEYS[1], ARGV[i], ARGV[i + 1]) end
return out
