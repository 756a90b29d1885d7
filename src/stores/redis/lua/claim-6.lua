--[[
  Claims due jobs for one dispatcher: moves them from the index into the in-flight set with a
  lease deadline, so no other dispatcher can claim them until the lease ends. Jobs whose lease
  ended (their dispatcher died) are claimed again first.

  The lease deadline doubles as the claim's token: a later claim of the same job always has a
  strictly greater deadline (it happens at or after the old deadline), so ZSCORE(id) == token
  proves the caller still holds the job.

  KEYS[1]  the index, <prefix>scheduled_task_id_by_time
  KEYS[2]  the in-flight set, <prefix>celery_longterm_scheduler:in_flight (id -> lease deadline)
  KEYS[3]  the in-flight entries, hash <prefix>celery_longterm_scheduler:in_flight_entries (id -> entry)
  KEYS[4]  key -> id hash, <prefix>celery_longterm_scheduler:job_keys
  KEYS[5]  id -> key hash, <prefix>celery_longterm_scheduler:job_key_of: a job in flight holds
           no deduplication key, so newly claimed jobs drop theirs (one EXISTS when no job has one)
  KEYS[6]  id -> failed attempts hash, <prefix>celery_longterm_scheduler:attempts: each claimed
           job's record is returned with it (one EXISTS when no job has one)
  ARGV[1]  key prefix
  ARGV[2]  claim jobs due at or before this time (unix seconds)
  ARGV[3]  now (unix seconds): leases that ended at or before it are expired
  ARGV[4]  the most jobs to claim
  ARGV[5]  the lease deadline for this claim (unix seconds): its token

  Returns a flat array: id, due time, entry (false when the key is missing or not a string),
  attempts record (false when none), repeated.
  A re-claimed job reports its old lease deadline as its due time (its real due time has passed).

  A claimed job's entry moves from its key into the in-flight entries hash: the key is deleted
  here, right after it was read and while it is still in the CPU caches, which in a large
  keyspace costs far less than deleting it a batch later. Until acknowledged, the entry is kept.

  Commands are variadic, one per batch and not one per job, in chunks that stay below Lua's
  unpack() limit.
]]
local prefix, limit, deadline = ARGV[1], tonumber(ARGV[4]), ARGV[5]
local CHUNK = 1000

local function variadic(cmd, key, args)
  for i = 1, #args, CHUNK do
    redis.call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
  end
end

local ids, dues = {}, {}
local reclaimed = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #expired, 2 do
  ids[#ids + 1] = expired[i]
  dues[#dues + 1] = expired[i + 1]
end
reclaimed = #ids
local room = limit - #ids
if room > 0 then
  -- Due jobs are the head of the index, so they leave it as one rank range: far cheaper in a
  -- large index than removing each member (a skiplist search from the top for every job).
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, room)
  for i = 1, #due, 2 do
    ids[#ids + 1] = due[i]
    dues[#dues + 1] = due[i + 1]
  end
  -- Each new claim's key is read before anything is written: while the slot migrates, a key
  -- already moved to the other node fails the script there, and a script failing after the
  -- writes below would leave the jobs in flight without their entries.
  for i = 1, #due, 2 * CHUNK do
    local keys = {}
    for k = i, math.min(i + 2 * CHUNK - 1, #due), 2 do keys[#keys + 1] = prefix .. due[k] end
    redis.call('EXISTS', unpack(keys))
  end
  if #due > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due / 2 - 1) end
end
if #ids == 0 then return {} end

local leased = {}
for _, id in ipairs(ids) do
  leased[#leased + 1] = deadline
  leased[#leased + 1] = id
end
variadic('ZADD', KEYS[2], leased)

-- newly claimed jobs give up their deduplication keys (re-claimed ones gave them up before)
if #ids > reclaimed and redis.call('EXISTS', KEYS[5]) == 1 then
  for i = reclaimed + 1, #ids, CHUNK do
    local last = math.min(i + CHUNK - 1, #ids)
    local keys = redis.call('HMGET', KEYS[5], unpack(ids, i, last))
    local held, heldKeys = {}, {}
    for k = 1, #keys do
      if keys[k] then
        held[#held + 1] = ids[i + k - 1]
        heldKeys[#heldKeys + 1] = keys[k]
      end
    end
    if #held > 0 then
      redis.call('HDEL', KEYS[5], unpack(held))
      local holders = redis.call('HMGET', KEYS[4], unpack(heldKeys))
      local gone = {}
      for k = 1, #holders do
        if holders[k] == held[k] then gone[#gone + 1] = heldKeys[k] end
      end
      if #gone > 0 then redis.call('HDEL', KEYS[4], unpack(gone)) end
    end
  end
end

local entries = {}
-- re-claimed jobs: their entries are already in the in-flight hash
for i = 1, reclaimed, CHUNK do
  local part = redis.call('HMGET', KEYS[3], unpack(ids, i, math.min(i + CHUNK - 1, reclaimed)))
  for k = 1, #part do entries[i + k - 1] = part[k] end
end
-- newly claimed jobs: read each key, then move its entry into the hash
for i = reclaimed + 1, #ids, CHUNK do
  local last = math.min(i + CHUNK - 1, #ids)
  local keys, moved = {}, {}
  for n = i, last do keys[#keys + 1] = prefix .. ids[n] end
  -- MGET reads a key of another type (a shared database) as nil instead of failing
  local values = redis.call('MGET', unpack(keys))
  for k = 1, #values do
    local n = i + k - 1
    entries[n] = values[k]
    if values[k] then
      moved[#moved + 1] = ids[n]
      moved[#moved + 1] = values[k]
    end
  end
  if #moved > 0 then
    redis.call('HSET', KEYS[3], unpack(moved))
    -- delete only the keys that were strings (and so were moved)
    local gone = {}
    for k = 1, #moved, 2 do gone[#gone + 1] = prefix .. moved[k] end
    redis.call('DEL', unpack(gone))
  end
end

local attempts = {}
if redis.call('EXISTS', KEYS[6]) == 1 then
  for i = 1, #ids, CHUNK do
    local part = redis.call('HMGET', KEYS[6], unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for k = 1, #part do attempts[i + k - 1] = part[k] end
  end
end

local out = {}
for n = 1, #ids do
  out[#out + 1] = ids[n]
  out[#out + 1] = dues[n]
  out[#out + 1] = entries[n] or false
  out[#out + 1] = attempts[n] or false
end
return out
