-- Admits messages: ARGV[3] is the item count, then the items' fields (see
-- admit_items.lua).
local results = admit_items(3, tonumber(ARGV[3]))
wake()
return { results, gauges() }
