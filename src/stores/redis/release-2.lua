--[[
  Gives claimed jobs back: moves them from the in-flight set to the index at their due time,
  for the next dispatch to send (used when the broker refused or could not be reached).

  KEYS[1]  the index
  KEYS[2]  the in-flight set
  ARGV[1..] pairs: task id, due time (unix seconds)

  Returns how many jobs were released.
]]
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    n = n + 1
  end
end
return n
