-- Shared prelude of the OTP scripts (after common.lua). ARGV[3] is OTP_KEEP
-- (microseconds an ended OTP is kept), passed by the caller so the Rust
-- constant stays the one source of it.
--
-- An OTP is a hash: `j` is the record as put (JSON, never read here), `st`
-- status, `at` wrong attempts, `mx` max attempts, `ex` expiry, `da` end,
-- `pk` its pending index key. Redis forgets it by itself: the key expires
-- at max(ex, da) + OTP_KEEP, refreshed on every write.
local OTP_KEEP = tonumber(ARGV[3])

local function otp_key(id) return P .. ':otp:' .. id end
local function pending_key(pk) return P .. ':otp_pending:' .. pk end

-- Microseconds (a decimal string) as whole milliseconds for PEXPIREAT:
-- below 2^53 the division is exact enough, and '%.0f' never prints an
-- exponent.
local function ms(micros) return string.format('%.0f', math.floor(micros / 1000)) end

-- Sets the TTL of OTP key `k` from its expiry `ex` and end `da` (or nil).
local function otp_expire(k, ex, da)
  local t = tonumber(ex)
  if da and tonumber(da) > t then t = tonumber(da) end
  redis.call('PEXPIREAT', k, ms(t + OTP_KEEP))
end

-- Drops the pending index entry `pk` if it still names OTP `id`.
local function clear_pending(pk, id)
  local idx = pending_key(pk)
  if redis.call('GET', idx) == id then redis.call('DEL', idx) end
end

-- Writes the changed fields of OTP `id` (status, attempts, end), refreshes
-- its TTL and, once it ended, its pending index entry.
local function otp_save(id, st, at, da, ex, pk)
  local k = otp_key(id)
  redis.call('HSET', k, 'st', st, 'at', tostring(at))
  if da then redis.call('HSET', k, 'da', da) end
  otp_expire(k, ex, da)
  if st ~= 'pending' and pk then clear_pending(pk, id) end
end
