-- Records what became of claimed deliveries. ARGV[3] is the count, then 5
-- fields each: member, the claim's lapse time, "D" done, "R" retry or "P"
-- postpone (due again without counting an attempt), retry time, error. A
-- claim that lapsed and was taken again is stale: ignored.
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 3 + i * 5
  local member, claimed, kind, at, err = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local score = redis.call('ZSCORE', WEBHOOKS, member)
  if score and tonumber(score) == tonumber(claimed) then
    if kind == 'D' then
      redis.call('ZREM', WEBHOOKS, member)
      redis.call('DEL', P .. ':wh:' .. member)
      -- A status webhook was its message's last work: retention starts.
      if string.sub(member, 1, 2) == 'm:' then retain(P .. ':' .. member) end
    elseif kind == 'P' then
      redis.call('ZADD', WEBHOOKS, at, member)
    else
      redis.call('HINCRBY', P .. ':wh:' .. member, 'a', 1)
      redis.call('HSET', P .. ':wh:' .. member, 'e', err)
      redis.call('ZADD', WEBHOOKS, at, member)
    end
  end
end
return gauges()
