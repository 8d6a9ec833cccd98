-- Periodic upkeep, run by every node. ARGV[3] idempotency cutoff and
-- ARGV[4] early-receipt cutoff (micros; older entries go), ARGV[5] most
-- entries per step, ARGV[6] the calling node, ARGV[7] how long finished
-- messages are kept (ms; their key TTL), ARGV[8] the first inbound id kept.
-- Returns {expired records, promoted, purged, reclaimed, gauges}.
local idem_cutoff, early_cutoff, most, me = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local inbound_kept = ARGV[8]
local now = tonumber(NOW)
local expired, promoted, purged, reclaimed = {}, 0, 0, 0

-- Messages finishing from now on (on any node) expire this long after.
keep_ms = ARGV[7]
redis.call('HSET', P .. ':retention', 'm', keep_ms)

-- Ready messages past their validity: expired, never sent.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW, 'LIMIT', 0, most)) do
  redis.call('ZREM', EXPIRY, id)
  local mk = mkey(id)
  local f = redis.call('HMGET', mk, 'rt', 'ri', 'cl', 'st')
  local conn = connector_at(f[1], f[2])
  if conn and redis.call('ZREM', qkey(conn, f[3]), id) == 1 then
    count_depth(f[3], -1)
    if f[4] == 'queued' then finish(id, mk, 'expired', NOW, expired) end
  end
end

-- Retries (and deferred messages) whose time came: back in their queue.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW, 'LIMIT', 0, most)) do
  redis.call('ZREM', DELAYED, id)
  local mk = mkey(id)
  local f = redis.call('HMGET', mk, 'st', 'ex')
  if f[1] == 'queued' then
    if (tonumber(f[2]) or 0) <= now then
      finish(id, mk, 'expired', NOW, expired)
    elseif enqueue(id, mk) then
      promoted = promoted + 1
    end
  end
end

-- Idempotency keys past their TTL.
for _, scope in ipairs(redis.call('ZRANGEBYSCORE', P .. ':idem_age', '-inf', '(' .. idem_cutoff, 'LIMIT', 0, most)) do
  redis.call('ZREM', P .. ':idem_age', scope)
  redis.call('HDEL', P .. ':idem', scope)
  purged = purged + 1
end

-- Receipts whose submit never showed up.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. ':early_age', '-inf', '(' .. early_cutoff, 'LIMIT', 0, most)) do
  redis.call('ZREM', P .. ':early_age', member)
  local conn, sid = string.match(member, '^([^\n]*)\n(.*)$')
  if conn then redis.call('HDEL', early_key(conn), sid) end
  purged = purged + 1
end

-- Inbound messages past their retention (ids sort by arrival; a hash
-- field cannot expire by itself). Their webhooks carry their own copy.
for _, id in ipairs(redis.call('ZRANGEBYLEX', P .. ':inbound', '-', '(' .. inbound_kept, 'LIMIT', 0, most)) do
  redis.call('ZREM', P .. ':inbound', id)
  redis.call('HDEL', P .. ':inbound:data', id)
  purged = purged + 1
end

-- Nodes whose heartbeat lapsed: their claims go back to the queues.
for _, node in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  if node ~= me and redis.call('EXISTS', P .. ':alive:' .. node) == 0 then
    reclaimed = reclaimed + requeue_claims(node)
    redis.call('SREM', P .. ':nodes', node)
  end
end

wake()
return { expired, promoted, purged, reclaimed, gauges() }
