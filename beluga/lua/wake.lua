#!lua
-- wake.lua: runs need a coordinator (Fleet.wake): adds them to their shard's wake set and says whether
-- the caller must send the shard's wake task.
--
-- KEYS
--   wake_key      <t>:wake, set of workflow ids that need a coordinator
--   waking_key    <t>:waking, set while the shard's wake task is queued or running
-- ARGV
--   ttl_ms        how long a wake task may stay queued before another is sent, in milliseconds
--   #workflow_ids   how many workflow ids follow
--   workflow_ids...  the runs, all of the shard
-- Returns 1 when the caller must send the shard's wake task, else 0.

-- #include "lib/wake.lua"

local wake_key, waking_key = KEYS[1], KEYS[2]
local ttl_ms, n_workflow_ids = ARGV[1], tonumber(ARGV[2])

for i = 1, n_workflow_ids do redis.call('SADD', wake_key, ARGV[2 + i]) end
return wake_task_needed(wake_key, waking_key, ttl_ms)
