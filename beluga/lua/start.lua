#!lua
-- start.lua: the fleet client starts a run (CeleryExecutor.execute): create it, list it, arm its
-- execution timeout and queue its start message in the same atomic step, so that the run is listed and
-- woken (by the sweeper, should the broker's wake be lost) even if the client dies right after, or Redis
-- refuses the next write. A retry with the same request id finds the run it made.
--
-- KEYS
--   run_key         <t>:<id>:run, hash: run_id, status, summary, type, created, updated, version, request
--   events_key      <t>:<id>:events, stream of the events once more than 8, an entry per append (lib/events.lua)
--   inbox_key       <t>:<id>:inbox, list of messages for the coordinator
--   dirty_key       <t>:dirty, sorted set: workflow id -> when its inbox got a message
--   timers_key      <t>:timers, sorted set: "<id>\0<message>" -> due time (the fleet's durable timers)
-- ARGV
--   run_id          the new run's id
--   status          its status
--   summary         its encoded summary
--   workflow_type   its workflow type
--   created         its creation time
--   updated         its update time
--   request_id      the caller's request id ('' for none)
--   workflow_id     the run's workflow id
--   start_message   the encoded start message for its inbox
--   index_prefix    <t>:index:, the run's shard's listing indexes (lib/index.lua), written in this step
--   timeout_due     when the run times out (its execution timeout), or '' for none
--   timeout_member  the timer that times it out, armed in this step ('' for none)
--   #events         how many events follow
--   events...       its first events, ids 1, 2, ...
-- Returns '' when created (the id had no run), '+' when created in place of an earlier run; '=' followed
-- by the run id when this request created the current run already; else the id of the open run that
-- blocks it.

-- #include "lib/events.lua"
-- #include "lib/index.lua"
-- #include "lib/create.lua"

local c = {
  run_key = KEYS[1], events_key = KEYS[2], inbox_key = KEYS[3],
  run_id = ARGV[1], status = ARGV[2], summary = ARGV[3], workflow_type = ARGV[4], created = ARGV[5],
  replace_run_id = '', updated = ARGV[6], workflow_id = ARGV[8], index_prefix = ARGV[10], events = {},
}
local dirty_key, timers_key = KEYS[4], KEYS[5]
local request_id, workflow_id, start_message = ARGV[7], ARGV[8], ARGV[9]
local timeout_due, timeout_member = ARGV[11], ARGV[12]
local n_events = tonumber(ARGV[13])
for v = 1, n_events do c.events[v] = ARGV[13 + v] end

if request_id ~= '' then
  local cur = redis.call('HMGET', c.run_key, 'run_id', 'request')
  if cur[1] and cur[2] == request_id then return '=' .. cur[1] end
end
local created = create_run(c)
if created ~= '' and created ~= '+' then return created end
if request_id ~= '' then redis.call('HSET', c.run_key, 'request', request_id) end
redis.call('RPUSH', c.inbox_key, start_message)
redis.call('ZADD', dirty_key, c.created, workflow_id)
if timeout_member ~= '' then redis.call('ZADD', timers_key, timeout_due, timeout_member) end
return created
