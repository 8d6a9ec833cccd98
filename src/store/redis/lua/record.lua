-- Records outcomes of claimed messages for node ARGV[3]. ARGV[4] is the
-- count, then 5 fields per outcome: kind, id, x, y, z:
--   S submitted: x connector, y smsc ids ("\n"-joined), z submitted at
--   R retry:     x not before, y error
--   F failover:  y error
--   X failed:    y error
--   E expired
--   L released
-- Returns the records that became final.
local node = ARGV[3]
local finals = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local b = 4 + i * 5
  local kind, id, x, y, z = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  redis.call('SREM', claimed_key(node), id)
  local mk = mkey(id)
  -- Only a queued message takes an outcome: the first word wins (e.g. an
  -- expiry by maintenance, or a submit recorded by a node that took over).
  if redis.call('HGET', mk, 'st') == 'queued' then
    if kind == 'S' then
      dequeue(id, mk)
      local ids = split(y)
      redis.call('HSET', mk, 'st', 'submitted', 'cn', x, 'sid', y, 'np', math.max(#ids, 1), 'sa', z)
      redis.call('HINCRBY', mk, 'at', 1)
      redis.call('HDEL', mk, 'er')
      for _, sid in ipairs(ids) do
        redis.call('HSET', smsc_key(x), sid, id)
        local early = redis.call('HGET', early_key(x), sid)
        if early then
          redis.call('HDEL', early_key(x), sid)
          redis.call('ZREM', P .. ':early_age', x .. '\n' .. sid)
          local delivered, at, err = string.match(early, '^(%d)\n([^\n]*)\n(.*)$')
          if delivered then apply_receipt(x, sid, delivered, err, at, finals) end
        end
      end
    elseif kind == 'R' then
      dequeue(id, mk)
      redis.call('HINCRBY', mk, 'at', 1)
      redis.call('HSET', mk, 'er', y)
      redis.call('ZADD', DELAYED, x, id)
    elseif kind == 'F' then
      dequeue(id, mk)
      redis.call('HSET', mk, 'er', y)
      local f = redis.call('HMGET', mk, 'rt', 'ri')
      local ri = tonumber(f[2]) or 0
      if ri + 1 < #split(f[1]) then
        redis.call('HSET', mk, 'ri', ri + 1)
        enqueue(id, mk)
      else
        finish(id, mk, 'failed', NOW, finals)
      end
    elseif kind == 'X' then
      dequeue(id, mk)
      redis.call('HSET', mk, 'er', y)
      finish(id, mk, 'failed', NOW, finals)
    elseif kind == 'E' then
      dequeue(id, mk)
      finish(id, mk, 'expired', NOW, finals)
    elseif kind == 'L' then
      enqueue(id, mk)
    end
  end
end
wake()
return { finals, gauges() }
