-- Records outcomes of claimed messages for node ARGV[3]. ARGV[4] is the
-- count, then 8 fields per outcome: kind, id, x, y, z, a, b, c:
--   S submitted: x connector, y smsc ids ("\n"-joined), z submitted at
--   R retry:     x not before, y error, z "1" if it counts as an attempt,
--                a parts taken so far (PartialSubmit json, or ""),
--                b their connector, c their smsc ids ("\n"-joined)
--   F failover:  y error
--   X failed:    y error
--   E expired
--   L released
-- Returns the records that became final.
local node = ARGV[3]
local finals = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local b = 4 + i * 8
  local kind, id, x, y, z = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  -- Still in our claimed set: a claim took it out of its queue and no
  -- takeover put it back, so there is nothing to take out.
  local claimed = redis.call('SREM', claimed_key(node), id) == 1
  local mk = mkey(id)
  local f = redis.call('HMGET', mk, 'st', 'rt', 'ri', 'cl', 'ptc', 'pti', 'pf', 'at', 'er')
  -- Only a queued message takes an outcome: the first word wins (e.g. an
  -- expiry by maintenance, or a submit recorded by a node that took over).
  -- A message of a canceled broadcast that was in flight when the cancel
  -- came and did not reach the carrier is not tried again.
  if f[1] == 'queued' and kind ~= 'S' and kind ~= 'X' and kind ~= 'E' then
    local bc = redis.call('HGET', mk, 'bc')
    if bc and redis.call('HGET', P .. ':b:' .. bc, 'st') == 'canceled' then
      local current = connector_at(f[2], f[3])
      if claimed then current = nil end
      dequeue_at(id, current, f[4])
      finish(id, mk, 'canceled', NOW, finals, nil, { 'er', 'broadcast canceled' })
      f[1] = 'canceled'
    end
  end
  if f[1] == 'queued' then
    local current = connector_at(f[2], f[3])
    if claimed then current = nil end
    local attempts = tonumber(f[8]) or 0
    if kind == 'S' then
      dequeue_at(id, current, f[4])
      -- Parts taken on an earlier try are linked (maybe receipted) already;
      -- taken by another connector's carrier, they no longer count.
      local linked = {}
      if f[5] then
        if f[5] == x then
          linked = split(f[6])
          redis.call('HDEL', mk, 'pt', 'ptc', 'pti')
        else
          unlink_partial(mk)
          f[7] = '0'
        end
      end
      local ids = split(y)
      redis.call('HSET', mk, 'st', 'submitted', 'cn', x, 'sid', y, 'np', math.max(#ids, 1), 'sa', z,
        'at', tostring(attempts + 1))
      local bc = redis.call('HGET', mk, 'bc')
      if bc then count_broadcast(bc, 'queued', 'submitted') end
      redis.call('HDEL', mk, 'sb')
      -- Keep a failed part's carrier error; drop retry noise.
      if f[9] and (tonumber(f[7]) or 0) == 0 then redis.call('HDEL', mk, 'er') end
      local early = {}
      link_parts(x, without(ids, linked), id, early)
      apply_early(early, finals)
    elseif kind == 'R' then
      dequeue_at(id, current, f[4])
      if z == '1' then redis.call('HSET', mk, 'at', tostring(attempts + 1)) end
      if (tonumber(f[7]) or 0) == 0 then redis.call('HSET', mk, 'er', y) end
      redis.call('ZADD', DELAYED, x, id)
      local partial, pconn, pids = ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
      if partial ~= '' then
        local old = redis.call('HGET', mk, 'ptc')
        if old and old ~= pconn then unlink_partial(mk) end
        local known = split(redis.call('HGET', mk, 'pti'))
        redis.call('HSET', mk, 'pt', partial, 'ptc', pconn, 'pti', pids)
        local early = {}
        link_parts(pconn, without(split(pids), known), id, early)
        apply_early(early, finals)
      end
    elseif kind == 'F' then
      dequeue_at(id, current, f[4])
      unlink_partial(mk)
      redis.call('HSET', mk, 'er', y)
      local ri = tonumber(f[3]) or 0
      if ri + 1 < #split(f[2]) then
        redis.call('HSET', mk, 'ri', ri + 1)
        enqueue(id, mk)
      else
        finish(id, mk, 'failed', NOW, finals)
      end
    elseif kind == 'X' then
      dequeue_at(id, current, f[4])
      redis.call('HSET', mk, 'er', y)
      finish(id, mk, 'failed', NOW, finals)
    elseif kind == 'E' then
      dequeue_at(id, current, f[4])
      finish(id, mk, 'expired', NOW, finals)
    elseif kind == 'L' then
      enqueue(id, mk)
    end
  end
end
wake()
return { finals, gauges() }
