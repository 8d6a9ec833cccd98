-- Turns recipients of broadcast ARGV[3] into messages: only if it is
-- sending and its cursor is where the caller read it (ARGV[4] "1" and the
-- cursor ARGV[5], or ARGV[4] "0" for none yet); then moves the cursor to
-- ARGV[6]. ARGV[7] counts recipients refused before the store, ARGV[8] is
-- the item count, then the items (see admit_items.lua).
-- Returns {{0, created, refused}} or {{1}} (stale), and the gauges.
local bk = P .. ':b:' .. ARGV[3]
local f = redis.call('HMGET', bk, 'st', 'cur')
local cur = f[2]
if cur == false then cur = nil end
local expected = nil
if ARGV[4] == '1' then expected = ARGV[5] end
if f[1] ~= 'sending' or cur ~= expected then return { { 1 }, gauges() } end
local results = admit_items(8, tonumber(ARGV[8]))
local created, refused = 0, tonumber(ARGV[7])
for _, r in ipairs(results) do
  if r[1] == 0 then
    created = created + 1
  elseif r[1] == 2 or r[1] == 3 then
    refused = refused + 1
  end
end
redis.call('HSET', bk, 'cur', ARGV[6])
redis.call('HINCRBY', bk, 'fan', created)
redis.call('HINCRBY', bk, 'ref', refused)
wake()
return { { 0, created, refused }, gauges() }
