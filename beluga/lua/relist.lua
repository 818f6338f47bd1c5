#!lua
-- relist.lua: a run listed by 0.1.0 only (in the one global index, `<p>:index:*`) is listed in its
-- shard's indexes under what its hash says now (RedisStore.adopt_listing). Reading the run's status and
-- listing it under it is one step, so a closing append that runs before or after it leaves the run
-- listed once, under its last status.
--
-- KEYS
--   run_key         <t>:<id>:run, hash: run_id, status, type, ...
-- ARGV
--   workflow_id     the run's id
--   index_prefix    its shard's listing indexes, '<t>:index:'
--   created         its creation time (its order in the listings), from the old index
-- Returns 1 when listed, 0 when the run is gone.

-- #include "lib/index.lua"

local run_key = KEYS[1]
local workflow_id, index_prefix, created = ARGV[1], ARGV[2], ARGV[3]

local cur = redis.call('HMGET', run_key, 'status', 'type')
if not cur[1] or not cur[2] then return 0 end
index_add(index_prefix, workflow_id, cur[2], cur[1], created)
return 1
