-- Claims up to ARGV[3] webhook deliveries due now; each stays claimed until
-- ARGV[4] (its score moves there), after which another claim may take it.
-- Per job: {member, job hash, message record json or false}.
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', WEBHOOKS, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZADD', WEBHOOKS, ARGV[4], member)
  local job = redis.call('HGETALL', P .. ':wh:' .. member)
  local message = false
  if string.sub(member, 1, 2) == 'm:' then
    message = redis.call('HGET', mkey(string.sub(member, 3)), 'j')
  end
  out[#out + 1] = { member, job, message }
end
return { out, gauges() }
