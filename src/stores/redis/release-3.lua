--[[
  Gives claimed jobs back: moves them from the in-flight set to the index at their due time,
  for a later dispatch (used when the broker refused them or could not be reached, or on shutdown).

  KEYS[1]  the index
  KEYS[2]  the in-flight set
  KEYS[3]  the lease owners hash
  ARGV[1]  the claim token
  ARGV[2..] pairs: task id, due time (unix seconds)

  Returns how many jobs were released.
]]
local n = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZADD', KEYS[1], ARGV[i + 1], id)
    n = n + 1
  end
end
return n
