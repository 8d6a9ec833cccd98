-- Admission of messages, shared by the admit and broadcast fan-out
-- scripts: idempotency, opt-out, the per-recipient limit, then store and
-- queue, each item atomically. 18 fields per item (in the order
-- `push_items` in `redis/mod.rs` writes them).
--
-- Per item the result is {0, seq} created, {1, record} the earlier message
-- of its idempotency key, {2, wait_micros} rate limited, {3} opted out.

-- The sliding-log limit of `LimitPolicy::check`, step for step: the history
-- of (class, recipient) is a list of send times (strings, ascending).
local function check_limit(key, now_s, per_hour, per_day, min_interval)
  local now = tonumber(now_s)
  local horizon
  if per_day > 0 then horizon = DAY elseif per_hour > 0 then horizon = HOUR else horizon = min_interval * SEC end
  local live = {}
  for _, t in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if tonumber(t) > now - horizon then live[#live + 1] = tonumber(t) end
  end
  local wait = 0
  if min_interval > 0 and #live > 0 then
    wait = math.max(wait, live[#live] + min_interval * SEC - now)
  end
  local rules = { { per_hour, HOUR }, { per_day, DAY } }
  for _, rule in ipairs(rules) do
    local limit, window = rule[1], rule[2]
    if limit > 0 then
      local recent = {}
      for _, t in ipairs(live) do
        if t > now - window then recent[#recent + 1] = t end
      end
      if #recent >= limit then
        wait = math.max(wait, recent[#recent - limit + 1] + window - now)
      end
    end
  end
  if wait > 0 then return wait end
  redis.call('RPUSH', key, now_s)
  redis.call('LTRIM', key, -math.max(per_hour, per_day, 1), -1)
  -- Milliseconds stay below 1e14, so the number prints exactly.
  redis.call('PEXPIRE', key, horizon / 1000)
  return 0
end

local FIELDS = 18

-- Admits `count` items whose fields start after ARGV[base]; returns one
-- result per item.
local function admit_items(base, count)
-- One sequence block for the call, taken at the first item stored (so a
-- call that only refuses writes nothing); refused items after it leave
-- gaps, which only order.
local next_seq = nil
local results = {}
for i = 0, count - 1 do
  local b = base + i * FIELDS
  local id, json, to, class, route, ex, cb, not_before, scope, check_optout, per_hour, per_day, min_interval, created, status =
    ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7],
    ARGV[b + 8], ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12], ARGV[b + 13], ARGV[b + 14],
    ARGV[b + 15]
  local subject, sealed, bc = ARGV[b + 16], ARGV[b + 17], ARGV[b + 18]
  local result = nil
  if scope ~= '' then
    local seen = redis.call('HGET', P .. ':idem', scope)
    if seen then
      local earlier = redis.call('HGETALL', mkey(seen))
      if #earlier > 0 then result = { 1, earlier } end
    end
  end
  if not result and check_optout == '1' and redis.call('HEXISTS', P .. ':optouts', to) == 1 then
    result = { 3 }
  end
  if not result and (per_hour ~= '0' or per_day ~= '0' or min_interval ~= '0') then
    local wait = check_limit(P .. ':lim:' .. class .. ':' .. subject, created,
      tonumber(per_hour), tonumber(per_day), tonumber(min_interval))
    if wait > 0 then result = { 2, wait } end
  end
  if not result then
    if scope ~= '' then
      redis.call('HSET', P .. ':idem', scope, id)
      redis.call('ZADD', P .. ':idem_age', created, scope)
    end
    if next_seq == nil then
      local left = count - i
      next_seq = redis.call('INCRBY', P .. ':seq', left) - left
    end
    next_seq = next_seq + 1
    local seq = tostring(next_seq)
    redis.call('HSET', mkey(id), 'j', json, 'sq', seq, 'st', status, 'ri', '0', 'rt', route,
      'cl', class, 'ex', ex, 'cb', cb)
    if sealed ~= '' then redis.call('HSET', mkey(id), 'sb', sealed) end
    if bc ~= '' then
      redis.call('HSET', mkey(id), 'bc', bc)
      count_broadcast(bc, nil, status)
    end
    if status ~= 'queued' then
      -- Stored for the record only (e.g. already final): nothing to send.
    elseif not_before ~= '' and tonumber(not_before) > tonumber(created) then
      redis.call('ZADD', DELAYED, not_before, id)
    else
      enqueue_at(id, connector_at(route, 0), class, seq, ex)
    end
    result = { 0, next_seq }
  end
  results[#results + 1] = result
end
return results
end
