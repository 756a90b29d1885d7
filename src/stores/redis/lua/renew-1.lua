--[[
  Extends the lease of claimed jobs still held by this claim: their lease deadline (the token)
  becomes the new one. A job whose lease was taken over is left alone.

  KEYS[1]  the in-flight set (id -> lease deadline)
  ARGV[1]  the claim token (its lease deadline)
  ARGV[2]  the new lease deadline: the new token (later than the old one)
  ARGV[3..] task ids

  Returns the ids renewed.
]]
local token = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == token then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out
