--[[
  Acknowledges jobs the broker accepted: removes them from the in-flight set and deletes their
  entries. A job no longer leased to this claim (its lease was taken over) is left alone.

  KEYS[1]  the in-flight set
  KEYS[2]  the lease owners hash
  ARGV[1]  key prefix
  ARGV[2]  the claim token
  ARGV[3..] task ids

  Returns how many jobs were acknowledged.
]]
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[2] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', ARGV[1] .. id)
    n = n + 1
  end
end
return n
