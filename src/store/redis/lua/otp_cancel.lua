-- Cancels OTP ARGV[4] at NOW if it is pending (one past its expiry ends as
-- expired instead); an ended one stays as it is. Returns HGETALL of the OTP
-- or false when there is none.
local id = ARGV[4]
local k = otp_key(id)
local f = redis.call('HMGET', k, 'st', 'at', 'ex', 'pk')
if not f[1] then return false end
if f[1] == 'pending' then
  local st = 'canceled'
  if tonumber(NOW) >= tonumber(f[3]) then st = 'expired' end
  otp_save(id, st, f[2], NOW, f[3], f[4])
end
return redis.call('HGETALL', k)
