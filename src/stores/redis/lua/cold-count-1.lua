--[[
  Counts the compact tier's jobs (includes/cold.lua) in each of many due ranges, one ZCOUNT per
  chunk a range overlaps. Read only.

  KEYS[1]  the tier's chunks, <cp>cold_chunks
  ARGV[1]  the tier's key prefix <cp>
  ARGV[2..] pairs: min, max, as ZCOUNT takes them ('(' for an exclusive bound)

  Returns the count of each range, in order.
]]
local cp, chunks = ARGV[1], KEYS[1]
local out = {}
for i = 2, #ARGV, 2 do
  local min, max = ARGV[i], ARGV[i + 1]
  local bare = string.gsub(min, '^%(', '')
  local n = 0
  local first = bare ~= '-inf' and redis.call('ZREVRANGEBYSCORE', chunks, bare, '-inf', 'WITHSCORES', 'LIMIT', 0, 1) or {}
  local lo = first[2]
  if first[1] then n = n + redis.call('ZCOUNT', cp .. 'cold:' .. first[1], min, max) end
  while true do
    local got = redis.call('ZRANGEBYSCORE', chunks, lo and ('(' .. lo) or '-inf', max, 'WITHSCORES', 'LIMIT', 0, 64)
    for k = 1, #got, 2 do n = n + redis.call('ZCOUNT', cp .. 'cold:' .. got[k], min, max) end
    if #got < 128 then break end
    lo = got[#got]
  end
  out[#out + 1] = n
end
return out
