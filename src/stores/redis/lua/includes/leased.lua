-- Which of `ids` are still leased to this claim: their score in the in-flight set `inFlight`
-- equals `token` (the claim's lease deadline). Returns a table index -> true for those, read
-- with one ZMSCORE per 1,000 ids. A job whose lease another dispatcher took over is not ours.
local function leasedTo(inFlight, ids, token)
  local leased = {}
  for k = 1, #ids, 1000 do
    local scores = redis.call('ZMSCORE', inFlight, unpack(ids, k, math.min(k + 999, #ids)))
    for j = 1, #scores do
      if scores[j] and tonumber(scores[j]) == token then leased[k + j - 1] = true end
    end
  end
  return leased
end
