#!lua
-- start.lua: the fleet client starts a run (CeleryExecutor.execute): create it, list it, arm its
-- execution timeout and queue its start message in the same atomic step, so that the run is listed and
-- woken (by the sweeper, should the broker's wake be lost) even if the client dies right after, or Redis
-- refuses the next write. A retry with the same request id finds the run it made.
-- With a signal (signal-with-start): the signal goes to the open run of the id if there is one (as
-- push.lua queues it), else the run is created with the signal queued after its start message; one atomic
-- step, so concurrent callers on one id make one run that gets every signal.
--
-- KEYS
--   run_key         <t>:<id>:run, hash: run_id, status, summary, type, created, updated, version, request
--   events_key      <t>:<id>:events, stream of the events once more than 8, an entry per append (lib/events.lua)
--   inbox_key       <t>:<id>:inbox, list of messages for the coordinator
--   dirty_key       <t>:dirty, sorted set: workflow id -> when its inbox got a message
--   timers_key      <t>:timers, sorted set: "<id>\0<message>" -> due time (the fleet's durable timers)
--   requests_key    <t>:<id>:requests, set of request ids already queued (kept a day)
--   wake_key        <t>:wake, set of workflow ids that need a coordinator
--   waking_key      <t>:waking, set while the shard's wake task is queued or running
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
--   signal_message  the encoded signal of a signal-with-start ('' for none)
--   now             the time (a signal's dirty mark)
--   ttl_ms          how long a wake task may stay queued before another is sent, in milliseconds
--   attrs           its search-attribute index entries, JSON (lib/attrs.lua), or ''
--   #events         how many events follow
--   events...       its first events, ids 1, 2, ...
-- Returns '' when created (the id had no run), '+' when created in place of an earlier run; '=' followed
-- by the run id when this request created the current run already; with a signal, '!' followed by
-- push.lua's answer (0, 1 or 2) and the open run's id when the signal went to that run instead; else the
-- id of the open run that blocks it.

-- #include "lib/events.lua"
-- #include "lib/index.lua"
-- #include "lib/attrs.lua"
-- #include "lib/create.lua"
-- #include "lib/wake.lua"
-- #include "lib/push.lua"

local c = {
  run_key = KEYS[1], events_key = KEYS[2], inbox_key = KEYS[3],
  run_id = ARGV[1], status = ARGV[2], summary = ARGV[3], workflow_type = ARGV[4], created = ARGV[5],
  replace_run_id = '', updated = ARGV[6], workflow_id = ARGV[8], index_prefix = ARGV[10], attrs = ARGV[16],
  events = {},
}
local dirty_key, timers_key = KEYS[4], KEYS[5]
local request_id, workflow_id, start_message = ARGV[7], ARGV[8], ARGV[9]
local requests_key, wake_key, waking_key = KEYS[6], KEYS[7], KEYS[8]
local timeout_due, timeout_member = ARGV[11], ARGV[12]
local signal_message, now, ttl_ms = ARGV[13], ARGV[14], ARGV[15]
local signal = {
  run_key = c.run_key, inbox_key = c.inbox_key, requests_key = requests_key, dirty_key = dirty_key,
  wake_key = wake_key, waking_key = waking_key, message = signal_message, request_id = request_id,
  workflow_id = workflow_id, now = now, ttl_ms = ttl_ms,
}
local n_events = tonumber(ARGV[17])
for v = 1, n_events do c.events[v] = ARGV[17 + v] end

if request_id ~= '' then
  local cur = redis.call('HMGET', c.run_key, 'run_id', 'request')
  if cur[1] and cur[2] == request_id then return '=' .. cur[1] end
end
if signal.message ~= '' then
  local cur = redis.call('HMGET', c.run_key, 'run_id', 'status')
  local sent_before = request_id ~= '' and redis.call('SISMEMBER', requests_key, request_id) == 1
  if cur[1] and (cur[2] == 'running' or sent_before) then return '!' .. push_input(signal) .. cur[1] end
end
local created = create_run(c)
if created ~= '' and created ~= '+' then return created end
if request_id ~= '' then redis.call('HSET', c.run_key, 'request', request_id) end
redis.call('RPUSH', c.inbox_key, start_message)
if signal.message ~= '' then redis.call('RPUSH', c.inbox_key, signal.message) end
redis.call('ZADD', dirty_key, c.created, workflow_id)
if timeout_member ~= '' then redis.call('ZADD', timers_key, timeout_due, timeout_member) end
return created
