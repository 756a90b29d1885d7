--[[
  Exactly-once hand-off when the broker is a database of this same Redis server: for each job
  still leased to this claim, pushes its Celery message(s) onto the broker list(s) AND removes
  the job, in one atomic step. A dispatcher killed at any moment leaves either the job in the
  store (sent later, once) or the message in the broker, never both and never neither.

  KEYS[1]  the in-flight set (id -> lease deadline)
  KEYS[2]  the in-flight entries hash (id -> entry)
  ARGV[1]  key prefix (unused: a claimed job's key is already gone; kept for a stable signature)
  ARGV[2]  the claim token (its lease deadline): a job is still ours when its score equals it
  ARGV[3]  the store's database number
  ARGV[4]  the broker's database number
  ARGV[5..] per job: task id, number of messages n, then n pairs (list key, message)

  Returns an array with, per job in order, 1 when handed off or 0 when no longer leased to this claim.
]]
local prefix, token, storeDb, brokerDb = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local CHUNK = 1000

-- the task ids, and where each job's messages start in ARGV
local ids, starts = {}, {}
local i = 5
while i <= #ARGV do
  ids[#ids + 1] = ARGV[i]
  starts[#starts + 1] = i
  i = i + 2 + 2 * tonumber(ARGV[i + 1])
end

local out, mine = {}, {}
for k = 1, #ids, CHUNK do
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(ids, k, math.min(k + CHUNK - 1, #ids)))
  for j = 1, #scores do
    local n = k + j - 1
    if scores[j] and tonumber(scores[j]) == token then
      out[n] = 1
      mine[#mine + 1] = ids[n]
    else
      out[n] = 0
    end
  end
end
if #mine == 0 then return out end
for k = 1, #mine, CHUNK do
  local last = math.min(k + CHUNK - 1, #mine)
  redis.call('ZREM', KEYS[1], unpack(mine, k, last))
  redis.call('HDEL', KEYS[2], unpack(mine, k, last))
end

-- one LPUSH per run of messages for the same list (the same order as one LPUSH each)
redis.call('SELECT', brokerDb)
local key, values = nil, {}
local function flush()
  for k = 1, #values, CHUNK do redis.call('LPUSH', key, unpack(values, k, math.min(k + CHUNK - 1, #values))) end
  values = {}
end
for n = 1, #ids do
  if out[n] == 1 then
    local at = starts[n]
    for p = at + 2, at + 2 * tonumber(ARGV[at + 1]), 2 do
      if ARGV[p] ~= key then
        flush()
        key = ARGV[p]
      end
      values[#values + 1] = ARGV[p + 1]
    end
  end
end
flush()
redis.call('SELECT', storeDb)
return out
