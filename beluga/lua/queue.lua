#!lua
-- queue.lua: the fleet queues a message of its own for a run (Fleet.push): an activity's report, a
-- child's outcome, a lost attempt. Marks the run dirty until its inbox is empty, so that the sweeper
-- finds a message whose wake-up was lost. A script rather than MULTI, so that WAIT can follow it on
-- the same connection.
--
-- KEYS
--   inbox_key       <t>:<id>:inbox, list of messages for the coordinator
--   dirty_key       <t>:dirty, sorted set: workflow id -> when its inbox got a message
-- ARGV
--   message         the encoded message
--   now             the time
--   workflow_id     the run's workflow id
-- Returns 0.

local inbox_key, dirty_key = KEYS[1], KEYS[2]
local message, now, workflow_id = ARGV[1], ARGV[2], ARGV[3]

redis.call('RPUSH', inbox_key, message)
redis.call('ZADD', dirty_key, now, workflow_id)
return 0
