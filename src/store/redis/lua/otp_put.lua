-- Stores OTP ARGV[4] as the pending OTP of pending key ARGV[6], canceling
-- (at NOW, its creation) the pending OTP it replaces. ARGV[5] record json,
-- ARGV[7] status, ARGV[8] attempts, ARGV[9] max attempts, ARGV[10] expiry,
-- ARGV[11] end or "". Returns the id of the canceled OTP or false.
local id, j, pk, st, at, mx, ex, da = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
if da == '' then da = nil end
local idx = pending_key(pk)
local replaced = false
local old = redis.call('GET', idx)
if old then
  local f = redis.call('HMGET', otp_key(old), 'st', 'at', 'ex')
  if f[1] == 'pending' then
    otp_save(old, 'canceled', f[2], NOW, f[3], pk)
    replaced = old
  end
end
local k = otp_key(id)
redis.call('DEL', k)
redis.call('HSET', k, 'j', j, 'st', st, 'at', at, 'mx', mx, 'ex', ex, 'pk', pk)
if da then redis.call('HSET', k, 'da', da) end
otp_expire(k, ex, da)
redis.call('SET', idx, id)
redis.call('PEXPIREAT', idx, ms(tonumber(ex)))
return replaced
