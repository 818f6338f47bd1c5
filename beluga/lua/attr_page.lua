#!lua flags=no-writes
-- attr_page.lua: the next entries of one shard's listing by a number or datetime search attribute
-- (RedisStore.list with a range, beluga/stores/redis_listing.py): the runs whose value lies in the
-- range (lib/attrs.lua's `sa:<name>:<kind>`, scored by the value), in the order of a page (by creation
-- time, read from <t>:index:all), past the cursor and passing the listing's conditions on ids.
--
-- KEYS
--   attr_key        <t>:index:sa:<name>:<kind>, sorted set: workflow id -> the attribute's value
--   all_key         <t>:index:all, sorted set: workflow id -> creation time
-- ARGV
--   low             the range's low end in ZRANGEBYSCORE's syntax ('-inf', '10', '(10')
--   high            its high end ('+inf', '100', '(100')
--   backward        '1': oldest first from the cursor (the page before it), '': newest first
--   score           the cursor's creation time, or '' for none
--   workflow_id     the cursor's workflow id
--   prefix          the ids' prefix, or '' for any
--   kept_copies     '1': kept copies of retried runs (<id>/runs/<n>) too, '': not them
--   count           how many entries at most
-- Returns {id, creation time, ...}: at most `count` entries, in the page's order.

-- #include "lib/index.lua"

local attr_key, all_key = KEYS[1], KEYS[2]
local low, high, backward, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local workflow_id, prefix, kept_copies, count = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
backward, kept_copies = backward == '1', kept_copies == '1'

local bound = tonumber(score)
local found = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', attr_key, low, high)) do
  local created = redis.call('ZSCORE', all_key, id)
  if created and index_id_matches(id, prefix, kept_copies) then
    local s = tonumber(created)
    local past = not bound
    if bound and backward then past = s > bound or (s == bound and id > workflow_id) end
    if bound and not backward then past = s < bound or (s == bound and id < workflow_id) end
    if past then found[#found + 1] = {s, id, created} end
  end
end
table.sort(found, function(x, y)
  if x[1] ~= y[1] then
    if backward then return x[1] < y[1] end
    return x[1] > y[1]
  end
  if backward then return x[2] < y[2] end
  return x[2] > y[2]
end)
local out = {}
for i = 1, math.min(count, #found) do
  out[#out + 1] = found[i][2]
  out[#out + 1] = found[i][3]
end
return out
