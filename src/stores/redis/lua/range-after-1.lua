--[[
  Reads a sorted set (the index) in (score, member) order after a position, as ZRANGE by rank:
  O(log N) to find where to start, however many members share the position's score (a
  ZRANGEBYSCORE would have to skip them one by one). Read only; what it reads is of one moment.

  KEYS[1]  the sorted set
  ARGV[1]  the position's score (unix seconds)
  ARGV[2]  the position's member: the members read sort after it, at ARGV[1] (it need not be
           there any more, nor at that score)
  ARGV[3]  the last score read, inclusive ('+inf' for all)
  ARGV[4]  the most members read (the store asks for at most 1,000)

  Returns member, score, member, score, ... (ZRANGE WITHSCORES).
]]
local key, s, id = KEYS[1], ARGV[1], ARGV[2]

-- whether a sorts after b, byte by byte (how a sorted set orders members of one score; Lua's own
-- comparison follows the server's locale)
local function sortsAfter(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- the rank of the first member to read
local start
local score = redis.call('ZSCORE', key, id)
if score and tonumber(score) == tonumber(s) then
  start = redis.call('ZRANK', key, id) + 1
else
  -- the members at score s hold the ranks [lo, hi): the first of them sorting after the member
  -- is found by halving (one ZRANGE of one member a step)
  local lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)
  local hi = redis.call('ZCOUNT', key, '-inf', s)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if sortsAfter(redis.call('ZRANGE', key, mid, mid)[1], id) then hi = mid else lo = mid + 1 end
  end
  start = lo
end
local stop = math.min(start + tonumber(ARGV[4]), redis.call('ZCOUNT', key, '-inf', ARGV[3])) - 1
if stop < start then return {} end
return redis.call('ZRANGE', key, start, stop, 'WITHSCORES')
