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
-- #include "lib/push.lua"

return push_input({
  run_key = KEYS[1], inbox_key = KEYS[2], requests_key = KEYS[3], dirty_key = KEYS[4], wake_key = KEYS[5],
  waking_key = KEYS[6], message = ARGV[1], request_id = ARGV[2], workflow_id = ARGV[3], now = ARGV[4],
  ttl_ms = ARGV[5],
})
