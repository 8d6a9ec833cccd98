-- Applies delivery receipts. ARGV[3] is the count, then 5 fields per
-- receipt: connector, smsc id, delivered ("1"/"0"), error text, at.
-- Returns the records that became final.
local finals = {}
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 3 + i * 5
  apply_receipt(ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], finals)
end
return { finals, gauges() }
