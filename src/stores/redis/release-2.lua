--[[
  Gives claimed jobs back: moves them from the in-flight set to the index at their due time,
  for a later dispatch (used when the broker refused them or could not be reached, or on shutdown).
  A job no longer leased to this claim is left alone.

  KEYS[1]  the index
  KEYS[2]  the in-flight set (id -> lease deadline)
  ARGV[1]  the claim token (its lease deadline)
  ARGV[2..] pairs: task id, due time (unix seconds)

  Returns how many jobs were released.
]]
local token = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if score and tonumber(score) == token then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    n = n + 1
  end
end
return n
