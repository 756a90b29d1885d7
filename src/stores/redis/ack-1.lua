--[[
  Acknowledges jobs the broker accepted: removes them from the in-flight set and deletes their
  entries. A job no longer in flight (its lease was taken over) is left alone.

  KEYS[1]  the in-flight set
  ARGV[1]  key prefix
  ARGV[2..] task ids

  Returns how many jobs were acknowledged.
]]
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', ARGV[1] .. ARGV[i])
    n = n + 1
  end
end
return n
