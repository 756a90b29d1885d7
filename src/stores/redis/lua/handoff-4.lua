--[[
  Exactly-once hand-off when the broker is a database of this same Redis server: for each job
  still leased to this claim, pushes its Celery message(s) onto the broker list(s) AND removes
  the job, in one atomic step. A dispatcher killed at any moment leaves either the job in the
  store (sent later, once) or the message in the broker, never both and never neither.

  Redis does not roll a script back: a command that fails half-way leaves the writes before it.
  So everything that can fail is checked before the first write (every target key must be a list
  or absent), and the pushes come before the removals: a job leaves the store only once its
  messages are in. A job whose push cannot happen costs only itself: it stays in flight, leased
  to this claim, for the caller to retry later or make a dead letter.

  KEYS[1]  the in-flight set (id -> lease deadline)
  KEYS[2]  the in-flight entries hash (id -> entry)
  KEYS[3]  id -> failed attempts hash (a sent job's record goes)
  KEYS[4]  the tags hash (id -> JSON array of tags): a sent job's tags go (one EXISTS when no job
           has tags, else one HMGET per 1,000 jobs; only tagged jobs cost more)
  ARGV[1]  key prefix (unused: a claimed job's key is already gone; kept for a stable signature)
  ARGV[2]  the claim token (its lease deadline): a job is still ours when its score equals it
  ARGV[3]  the store's database number
  ARGV[4]  the broker's database number
  ARGV[5]  tag key prefix, <prefix>celery_longterm_scheduler:tag: (a tag's SET is ARGV[5] .. tag)
  ARGV[6..] per job: task id, number of messages n, then n pairs (list key, message)

  Returns an array with, per job in order: 1 when handed off, 0 when no longer leased to this
  claim, or a string saying why its messages could not be pushed (nothing of it changed).
]]
--- @include "leased"
--- @include "tags"
--- @include "sent"
local token, storeDb, brokerDb = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local CHUNK = 1000

-- the task ids, where each job's messages start in ARGV, and how many it has
local ids, starts, counts = {}, {}, {}
local i = 6
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
  starts[#starts + 1] = i + 2
  counts[#counts + 1] = n
  i = i + 2 + 2 * n
end

local out, candidates = {}, {}
local leased = leasedTo(KEYS[1], ids, token)
for n = 1, #ids do
  if leased[n] then candidates[#candidates + 1] = n else out[n] = 0 end
end
if #candidates == 0 then return out end

redis.call('SELECT', brokerDb)

-- 1. checks, no writes: a target key of another type fails its job only (TYPE once per key)
local keyType = {}
local ready = {}
for _, n in ipairs(candidates) do
  local why = nil
  local first = starts[n]
  for p = first, first + 2 * counts[n] - 2, 2 do
    local key = ARGV[p]
    local t = keyType[key]
    if t == nil then
      t = redis.call('TYPE', key).ok
      keyType[key] = t
    end
    if t ~= 'list' and t ~= 'none' then
      why = 'WRONGTYPE the broker key "' .. key .. '" holds a ' .. t .. ', not a list; delete or rename it'
      break
    end
  end
  if why then out[n] = why else ready[#ready + 1] = n end
end

-- 2. pushes, one LPUSH per run of messages for the same list (the same order as one LPUSH
-- each). A push that still fails (e.g. out of memory) stops here: `pushed` counts the messages
-- in, and the jobs not wholly in stay in flight.
local failed = nil
local pushed = 0
local key, values = nil, {}
local function flush()
  if failed or #values == 0 then return end
  for k = 1, #values, CHUNK do
    local last = math.min(k + CHUNK - 1, #values)
    local r = redis.pcall('LPUSH', key, unpack(values, k, last))
    if type(r) == 'table' and r.err then
      failed = r.err
      return
    end
    pushed = pushed + (last - k + 1)
  end
  values = {}
end
for r = 1, #ready do
  local n = ready[r]
  local first = starts[n]
  for p = first, first + 2 * counts[n] - 2, 2 do
    if ARGV[p] ~= key then
      flush()
      key = ARGV[p]
    end
    values[#values + 1] = ARGV[p + 1]
  end
  if failed then break end
end
flush()

-- 3. removals, for the jobs whose messages are all in (every one, unless a push failed)
redis.call('SELECT', storeDb)
local mine = {}
local through = 0 -- messages of the jobs so far, in push order
for r = 1, #ready do
  local n = ready[r]
  through = through + counts[n]
  if not failed or through <= pushed then
    out[n] = 1
    mine[#mine + 1] = ids[n]
  else
    out[n] = 'the push to the broker failed: ' .. tostring(failed)
  end
end
forgetSent(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[5], mine)
return out
