#!lua
-- push.lua: a client's input for a run (signal, cancel, terminate): queued in the run's inbox only while
-- the run is open, so an input is either recorded by the run or refused; never accepted and lost. A
-- retry with the same request id is recognised and queued no second time. A queued input adds the run to
-- its shard's wake set.
--
-- KEYS
--   run_key         <t>:<id>:run, hash: status, ...
--   inbox_key       <t>:<id>:inbox, list of messages for the coordinator
--   requests_key    <t>:<id>:requests, set of request ids already queued (kept a day)
--   dirty_key       <t>:dirty, sorted set: workflow id -> when its inbox got a message
--   wake_key        <t>:wake, set of workflow ids that need a coordinator
--   waking_key      <t>:waking, set while the shard's wake task is queued or running
-- ARGV
--   message         the encoded message
--   request_id      the caller's request id ('' for none)
--   workflow_id     the run's workflow id
--   now             the time
--   ttl_ms          how long a wake task may stay queued before another is sent, in milliseconds
-- Returns 0 when queued (and the shard's wake task is on its way), 2 when queued and the caller must send
-- the shard's wake task, 1 when this request was queued before, -1 when there is no such run, -2 when the
-- run is closed.

-- #include "lib/wake.lua"

local run_key, inbox_key, requests_key, dirty_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local wake_key, waking_key = KEYS[5], KEYS[6]
local message, request_id, workflow_id, now, ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if request_id ~= '' and redis.call('SISMEMBER', requests_key, request_id) == 1 then return 1 end
local status = redis.call('HGET', run_key, 'status')
if not status then return -1 end
if status ~= 'running' then return -2 end
if request_id ~= '' then
  redis.call('SADD', requests_key, request_id)
  redis.call('EXPIRE', requests_key, 86400)
end
redis.call('RPUSH', inbox_key, message)
redis.call('ZADD', dirty_key, now, workflow_id)
redis.call('SADD', wake_key, workflow_id)
return 2 * wake_task_needed(wake_key, waking_key, ttl_ms)
