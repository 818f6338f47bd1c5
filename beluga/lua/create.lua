#!lua
-- create.lua: starts a run (RedisStore.create), replacing a closed one or the open run replace_run_id.
--
-- KEYS
--   run_key         <t>:<id>:run, hash: run_id, status, summary, type, created, updated, version
--   events_key      <t>:<id>:events, stream of the events once more than 8, an entry per append (lib/events.lua)
--   inbox_key       <t>:<id>:inbox, list of messages for the coordinator
-- ARGV
--   run_id          the new run's id
--   status          its status
--   summary         its encoded summary
--   workflow_type   its workflow type
--   created         its creation time
--   replace_run_id  the open run it may replace, or ''
--   updated         its update time
--   workflow_id     the run's workflow id
--   index_prefix    <t>:index:, the run's shard's listing indexes (lib/index.lua), written in this step
--   attrs           its search-attribute index entries, JSON (lib/attrs.lua), or ''
--   #events         how many events follow
--   events...       its first events, ids 1, 2, ...
-- Returns '' when created (the id had no run), '+' when created in place of an earlier run, else the id
-- of the open run that blocks it. The inbox is kept when the new run continues the run replace_run_id
-- (continue-as-new: what waits there is for the new run), else cleared.

-- #include "lib/events.lua"
-- #include "lib/index.lua"
-- #include "lib/attrs.lua"
-- #include "lib/create.lua"

local c = {
  run_key = KEYS[1], events_key = KEYS[2], inbox_key = KEYS[3],
  run_id = ARGV[1], status = ARGV[2], summary = ARGV[3], workflow_type = ARGV[4], created = ARGV[5],
  replace_run_id = ARGV[6], updated = ARGV[7], workflow_id = ARGV[8], index_prefix = ARGV[9], attrs = ARGV[10],
  events = {},
}
local n_events = tonumber(ARGV[11])
for v = 1, n_events do c.events[v] = ARGV[11 + v] end

return create_run(c)
