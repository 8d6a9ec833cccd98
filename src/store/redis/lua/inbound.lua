-- Stores inbound messages, applies their opt-out / opt-in and queues their
-- webhooks. ARGV[3] is the count, then 7 fields per record: id, record
-- json, action ("", "opt_out", "opt_in"), sender, received at, webhook
-- member ("" for none), webhook job json.
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 3 + i * 7
  local id, json, action, from, at, member, job =
    ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  redis.call('HSET', P .. ':inbound:data', id, json)
  redis.call('ZADD', P .. ':inbound', 0, id)
  if action == 'opt_out' then
    redis.call('HSET', P .. ':optouts', from, at)
  elseif action == 'opt_in' then
    redis.call('HDEL', P .. ':optouts', from)
  end
  if member ~= '' then
    redis.call('ZADD', WEBHOOKS, at, member)
    redis.call('HSET', P .. ':wh:' .. member, 'j', job, 'a', '0')
  end
end
return gauges()
