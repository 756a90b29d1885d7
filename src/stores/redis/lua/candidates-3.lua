--[[
  A cluster claim's first read of one shard, in one round trip: moves the compact jobs due by
  the claim's horizon into the Redis layout (as cold-promote-2.lua does), then returns the claims
  whose lease ended by `now` and the first scheduled jobs due by `until`. Both lists are only
  candidates: the claim script decides.

  KEYS[1]  the compact tier's chunks, <cp>cold_chunks (nothing there for a shard without one)
  KEYS[2]  the index, <prefix>scheduled_task_id_by_time
  KEYS[3]  the in-flight set (id -> lease deadline)
  ARGV[1]  the tier's key prefix <cp>, '' for none
  ARGV[2]  its bucket count
  ARGV[3]  key prefix (a job's entry is ARGV[3] .. id)
  ARGV[4]  the horizon (compact jobs due by then move)
  ARGV[5]  at most this many of them
  ARGV[6]  now: leases that ended by then
  ARGV[7]  at most this many of them
  ARGV[8]  until: scheduled jobs due by then
  ARGV[9]  at most this many of them

  Returns {expired, due}: each a flat list of id, score.
]]
--- @include "cold"
coldPromoteDue(ARGV[1], tonumber(ARGV[2]), ARGV[3], KEYS[2], ARGV[4], tonumber(ARGV[5]))
return {
  redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[6], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[7])),
  redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[8], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[9])),
}
