#!lua flags=no-writes
-- index_count.lua: how many runs of one shard each status index lists that pass a listing's conditions
-- on ids, of one workflow type when `index_key` is a type's index (RedisStore.counts with an id prefix, or
-- without kept copies): counted where the indexes are, so that no id crosses the network.
--
-- KEYS
--   index_key       <t>:index:all, or <t>:index:type:<type>: the runs counted
-- ARGV
--   index_prefix    <t>:index:, the shard's listing indexes
--   prefix          the ids' prefix, or '' for any
--   kept_copies     '1': kept copies of retried runs (<id>/runs/<n>) too, '': not them
--   #statuses       how many statuses follow
--   statuses...     the statuses counted
-- Returns the count of each status, in order.

-- #include "lib/index.lua"

local index_key = KEYS[1]
local index_prefix, prefix, kept_copies, n_statuses = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
kept_copies = kept_copies == '1'
local statuses, counts = {}, {}
for i = 1, n_statuses do statuses[i] = ARGV[4 + i]; counts[i] = 0 end

local typed = index_key ~= index_prefix .. 'all'
for i = 1, n_statuses do
  for _, id in ipairs(redis.call('ZRANGE', index_prefix .. 'status:' .. statuses[i], 0, -1)) do
    if index_id_matches(id, prefix, kept_copies) and (not typed or redis.call('ZSCORE', index_key, id)) then
      counts[i] = counts[i] + 1
    end
  end
end
return counts
