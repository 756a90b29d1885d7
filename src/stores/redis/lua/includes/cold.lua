-- The compact tier of a cluster store's shard (../../compact.ts has the layout and the codec):
--   <cp>cold_chunks      ZSET chunk number -> the least due time it covers (chunks partition time)
--   <cp>cold:<chunk>     ZSET task id -> due time, at most COLD_CHUNK_MAX jobs (a listpack)
--   <cp>cold_bucket:<b>  HASH task id -> '<due time>|<compact entry>', b from the id's FNV-1a
--   <cp>cold_seq         the last chunk number given
--   <cp>cold_count       how many jobs the tier holds
-- <cp> is the shard's prefix then 'celery_longterm_scheduler:'. A job is in the compact tier or in
-- the Redis layout's (its key and the index), never both, and moves only from the first to the
-- second (coldPromote). A store without the tier passes '' for <cp>: every function here then
-- finds nothing.
local COLD_CHUNK_MAX = 120

-- The bucket key of an id: FNV-1a (32 bits) of its bytes, scaled to `buckets` by its high bits,
-- as compact.ts's coldBucket computes it.
local function coldBucket(cp, buckets, id)
  local h = 2166136261
  for i = 1, #id do
    h = bit.bxor(h, string.byte(id, i))
    -- h * 16777619 (2^24 + 2^8 + 0x93) modulo 2^32, each part exact in a double
    h = bit.tobit(bit.lshift(h, 24) + bit.lshift(h, 8) + h * 0x93)
  end
  if h < 0 then h = h + 4294967296 end
  return cp .. 'cold_bucket:' .. math.floor(h * buckets / 4294967296)
end

-- The entry of a compact one: each control byte stands for a fragment (compact.ts FRAGMENTS).
local COLD_FRAGMENTS = {
  [1] = '[["', [2] = '"],{"args":', [3] = '"], {"args": ', [5] = ',"queue":"', [7] = ', "queue": "',
  [8] = '"}]', [11] = ',"kwargs":', [12] = ', "kwargs": ', [14] = '}]',
}
local function coldEntry(id, compact)
  return (string.gsub(compact, '[\1-\8\11\12\14-\31]', function(c)
    local b = string.byte(c)
    if b == 4 then return ',"task_id":"' .. id .. '"' end
    if b == 6 then return ', "task_id": "' .. id .. '"' end
    return COLD_FRAGMENTS[b] or ''
  end))
end

-- Whether the compact tier holds id.
local function coldHas(cp, buckets, id)
  return cp ~= '' and redis.call('HEXISTS', coldBucket(cp, buckets, id), id) == 1
end

-- The first compact job's {id, due} (due a string), or nil. The first chunk is never empty.
local function coldHead(cp)
  if cp == '' then return nil end
  local c = redis.call('ZRANGE', cp .. 'cold_chunks', 0, 0)[1]
  if not c then return nil end
  local first = redis.call('ZRANGE', cp .. 'cold:' .. c, 0, 0, 'WITHSCORES')
  return first
end

-- The chunk covering `due`: the one with the greatest least due time not after it.
local function coldChunk(cp, due)
  return redis.call('ZREVRANGEBYSCORE', cp .. 'cold_chunks', due, '-inf', 'LIMIT', 0, 1)[1]
end

-- Reads every key a put or take of a job due at `due` may write, before it writes any: while
-- a slot migrates, a key already moved to the other node (or one to be made) fails a script
-- that touches it, and a script that failed halfway would leave a job in its bucket but in no
-- chunk. Failing here, it changes nothing, and is tried again.
local function coldReadFirst(cp, due, bucket)
  redis.call('EXISTS', bucket, cp .. 'cold_count', cp .. 'cold_chunks')
  local seq = tonumber(redis.call('GET', cp .. 'cold_seq') or '0')
  -- a split makes chunk seq + 1; a first chunk, the same
  redis.call('EXISTS', cp .. 'cold:' .. (seq + 1))
  local c = redis.call('ZREVRANGEBYSCORE', cp .. 'cold_chunks', due, '-inf', 'LIMIT', 0, 1)[1] or redis.call('ZRANGE', cp .. 'cold_chunks', 0, 0)[1]
  if c then redis.call('EXISTS', cp .. 'cold:' .. c) end
end

-- The chunk this script last wrote to: its number, the due times it covers [lo, hi) and its
-- size, so that jobs added in due order find it without a lookup each (see coldIndex).
local coldLast = {}

-- Puts id (due: a string) into its chunk, splitting a full one between two due times: at its
-- end when id went last (so jobs added in due order leave full chunks), else in its middle.
local function coldIndex(cp, id, due)
  local chunks = cp .. 'cold_chunks'
  local d = tonumber(due)
  if not (coldLast.c and d >= coldLast.lo and d < coldLast.hi) then
    local got = redis.call('ZREVRANGEBYSCORE', chunks, due, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if not got[1] then
      -- before every chunk: the first one covers it from now on
      local c = redis.call('ZRANGE', chunks, 0, 0)[1] or tostring(redis.call('INCR', cp .. 'cold_seq'))
      redis.call('ZADD', chunks, due, c)
      got = {c, due}
    end
    local after = redis.call('ZRANGEBYSCORE', chunks, '(' .. got[2], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    coldLast = {c = got[1], lo = tonumber(got[2]), hi = after[2] and tonumber(after[2]) or math.huge,
      n = redis.call('ZCARD', cp .. 'cold:' .. got[1])}
  end
  local key = cp .. 'cold:' .. coldLast.c
  coldLast.n = coldLast.n + redis.call('ZADD', key, due, id)
  local n = coldLast.n
  if n <= COLD_CHUNK_MAX then return end
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local function dueAt(i) return tonumber(all[2 * i + 2]) end
  local at = redis.call('ZRANK', key, id) == n - 1 and n - 1 or math.floor(n / 2)
  local split = nil
  for k = 0, n do
    if at + k < n and at + k > 0 and dueAt(at + k) ~= dueAt(at + k - 1) then split = at + k break end
    if at - k > 0 and at - k < n and dueAt(at - k) ~= dueAt(at - k - 1) then split = at - k break end
  end
  -- every job of the chunk due at one time: it stays one (larger) chunk
  if not split then return end
  local fresh = tostring(redis.call('INCR', cp .. 'cold_seq'))
  local moved = {}
  for i = split, n - 1 do
    moved[#moved + 1] = all[2 * i + 2]
    moved[#moved + 1] = all[2 * i + 1]
  end
  redis.call('ZADD', cp .. 'cold:' .. fresh, unpack(moved))
  redis.call('ZREMRANGEBYRANK', key, split, -1)
  redis.call('ZADD', chunks, all[2 * split + 2], fresh)
  coldLast = {}
end

-- Adds a job to the compact tier (its id checked free by the caller) in its bucket (the key);
-- value: '<due>|<compact>'.
local function coldPut(cp, bucket, id, due, value)
  coldReadFirst(cp, due, bucket)
  redis.call('HSET', bucket, id, value)
  redis.call('INCR', cp .. 'cold_count')
  coldIndex(cp, id, due)
end

-- Takes id out of the compact tier: its due time (a string) and compact entry, or nil.
local function coldTake(cp, buckets, id)
  if cp == '' then return nil end
  local bucket = coldBucket(cp, buckets, id)
  local v = redis.call('HGET', bucket, id)
  if not v then return nil end
  coldReadFirst(cp, string.sub(v, 1, string.find(v, '|', 1, true) - 1), bucket)
  redis.call('HDEL', bucket, id)
  if redis.call('DECR', cp .. 'cold_count') <= 0 then redis.call('DEL', cp .. 'cold_count') end
  local sep = string.find(v, '|', 1, true)
  local due = string.sub(v, 1, sep - 1)
  local c = coldChunk(cp, due)
  if c then
    redis.call('ZREM', cp .. 'cold:' .. c, id)
    if redis.call('EXISTS', cp .. 'cold:' .. c) == 0 then redis.call('ZREM', cp .. 'cold_chunks', c) end
    coldLast = {}
  end
  return due, string.sub(v, sep + 1)
end

-- The least of two {member, score} heads (either may be nil or empty).
local function earlierHead(a, b)
  if not (a and a[2]) then return b end
  if not (b and b[2]) then return a end
  return tonumber(b[2]) < tonumber(a[2]) and b or a
end

-- Moves one compact job into the Redis layout: its key (prefix .. id) holding the entry
-- expanded, and the index; 1 if it was compact, else 0.
local function coldPromote(cp, buckets, prefix, index, id)
  -- the key it will write, read first (see coldReadFirst)
  if cp ~= '' then redis.call('EXISTS', prefix .. id) end
  local due, compact = coldTake(cp, buckets, id)
  if not due then return 0 end
  redis.call('SET', prefix .. id, coldEntry(id, compact))
  redis.call('ZADD', index, due, id)
  return 1
end

-- Moves the compact jobs due by `horizon` into the Redis layout, in due order, at most `limit`.
local function coldPromoteDue(cp, buckets, prefix, index, horizon, limit)
  local moved = 0
  if cp == '' then return moved end
  while moved < limit do
    local c = redis.call('ZRANGE', cp .. 'cold_chunks', 0, 0)[1]
    if not c then break end
    local due = redis.call('ZRANGEBYSCORE', cp .. 'cold:' .. c, '-inf', horizon, 'LIMIT', 0, limit - moved)
    if #due == 0 then break end
    for _, id in ipairs(due) do
      if coldPromote(cp, buckets, prefix, index, id) == 1 then
        moved = moved + 1
      else
        -- in a chunk with no bucket value (its bucket deleted by hand): nothing to move, so it goes
        redis.call('ZREM', cp .. 'cold:' .. c, id)
        if redis.call('EXISTS', cp .. 'cold:' .. c) == 0 then redis.call('ZREM', cp .. 'cold_chunks', c) end
      end
    end
  end
  return moved
end
