-- One verification attempt on OTP ARGV[4] at NOW; ARGV[5] is "1" when the
-- code matched. The rule of OtpRecord::apply_attempt: a pending OTP past
-- its expiry expires, a match approves, a wrong code counts and the last
-- allowed one ends it; an ended OTP never changes. Returns
-- {approved (0/1), HGETALL of the OTP} or false when there is none.
local id, matched = ARGV[4], ARGV[5] == '1'
local k = otp_key(id)
local f = redis.call('HMGET', k, 'st', 'at', 'mx', 'ex', 'da', 'pk')
if not f[1] then return false end
local st, at, mx, ex, da, pk = f[1], tonumber(f[2]) or 0, tonumber(f[3]) or 0, f[4], f[5] or nil, f[6]
local approved = 0
if st == 'pending' then
  if tonumber(NOW) >= tonumber(ex) then
    st = 'expired'
    da = da or NOW
  elseif matched then
    st = 'approved'
    da = NOW
    approved = 1
  else
    at = at + 1
    if at >= mx then
      st = 'max_attempts'
      da = NOW
    end
  end
  otp_save(id, st, at, da, ex, pk)
end
return {approved, redis.call('HGETALL', k)}
