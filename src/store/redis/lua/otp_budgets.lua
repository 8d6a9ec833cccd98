-- Takes one from every budget of window ARGV[4] if all have room: ARGV[5]
-- counts the budgets, then (key, limit) pairs; a limit of 0 is counted, not
-- limited. Counters expire at ARGV[6] (milliseconds, two windows after the
-- window starts). Returns the 0-based index of the first full budget (and
-- takes nothing) or -1.
local window, n, expire_at = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local function bkey(i) return P .. ':otp_budget:' .. window .. ':' .. ARGV[5 + 2 * i] end
for i = 1, n do
  local limit = tonumber(ARGV[6 + 2 * i])
  if limit > 0 and (tonumber(redis.call('GET', bkey(i))) or 0) >= limit then
    return i - 1
  end
end
for i = 1, n do
  local k = bkey(i)
  redis.call('INCR', k)
  redis.call('PEXPIREAT', k, expire_at)
end
return -1
