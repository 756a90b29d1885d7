--[[
  Exactly-once hand-off when the broker is a database of this same Redis server: for each job
  still leased to this claim, pushes its Celery message(s) onto the broker list(s) AND removes
  the job, in one atomic step. A dispatcher killed at any moment leaves either the job in the
  store (sent later, once) or the message in the broker, never both and never neither.

  KEYS[1]  the in-flight set
  KEYS[2]  the lease owners hash
  ARGV[1]  key prefix
  ARGV[2]  the claim token
  ARGV[3]  the store's database number
  ARGV[4..] per job: task id, number of pushes n, then n triplets (broker db, list key, message)

  Returns an array with, per job in order, 1 when handed off or 0 when no longer leased to this claim.
]]
local prefix, token, storeDb = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local i = 4
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local first = i + 2
  i = first + 3 * n
  if redis.call('HGET', KEYS[2], id) == token then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', prefix .. id)
    for k = first, first + 3 * (n - 1), 3 do
      redis.call('SELECT', ARGV[k])
      redis.call('LPUSH', ARGV[k + 1], ARGV[k + 2])
    end
    redis.call('SELECT', storeDb)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
