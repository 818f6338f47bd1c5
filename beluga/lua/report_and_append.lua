#!lua
-- report_and_append.lua: the fast path of an activity attempt's report (Fleet.report_and_append), one
-- round trip, for a worker that has the run cached at its current version: retires the finished
-- attempt, then appends the events the report leads to only if the attempt was still the current one,
-- the run is still at the writer's version, no coordinator holds its lease and its inbox is empty; else
-- queues the report for the coordinator, as report.lua does, and appends nothing.
--
-- KEYS
--   run_key, events_key, inbox_key, lease_key, dispatched_key, timers_key
--                      as in append.lua (dispatched_key is the shard's <t>:dispatched: attempt member
--                      -> deadline, the one record of an attempt in flight; timers_key its <t>:timers)
--   running_info_key   <t>:running:info, hash: attempt member -> encoded info (heartbeat attempts only)
--   dirty_key          <t>:dirty, sorted set: workflow id -> when its inbox got a message
-- ARGV
--   run_id, expected_version, inbox_used, status, summary, updated, lease_token, dispatch_deadline,
--   workflow_id, index_prefix
--                      as in append.lua
--   report             the encoded report message
--   seq                the activity's seq
--   member             the finished attempt, "<workflow id>\0<seq>\0<attempt>"
--   next_attempt       the attempt allowed next (a retry), or '' to retire the seq
--   now                the time, for the dirty mark
--   next_deadline      until when the next attempt counts as dispatched
--   heartbeat          '1' when the attempt promised heartbeats (its info is dropped), else ''
--   #attempts, #events, #timers, attempts..., events..., timers...
--                      as in append.lua
-- Returns -1 when the report was queued for the coordinator, else 0 (the messages left in the inbox).

-- #include "lib/events.lua"
-- #include "lib/index.lua"
-- #include "lib/append.lua"
-- #include "lib/attempt.lua"

local a = {
  run_key = KEYS[1], events_key = KEYS[2], inbox_key = KEYS[3], lease_key = KEYS[4],
  dispatched_key = KEYS[5], timers_key = KEYS[6],
  run_id = ARGV[1], expected_version = tonumber(ARGV[2]), inbox_used = tonumber(ARGV[3]), status = ARGV[4],
  summary = ARGV[5], updated = ARGV[6], lease_token = ARGV[7], dispatch_deadline = ARGV[8], workflow_id = ARGV[9],
  index_prefix = ARGV[10], attempts = {}, events = {}, timers = {},
}
local r = {
  inbox_key = KEYS[3], dispatched_key = KEYS[5], running_info_key = KEYS[7], dirty_key = KEYS[8],
  workflow_id = ARGV[9], report = ARGV[11], seq = ARGV[12], member = ARGV[13], next_attempt = ARGV[14],
  now = ARGV[15], next_deadline = ARGV[16], heartbeat = ARGV[17],
}
local n_attempts, n_events, n_timers = tonumber(ARGV[18]), tonumber(ARGV[19]), tonumber(ARGV[20])
for i = 1, 2 * n_attempts do a.attempts[i] = ARGV[20 + i] end
for i = 1, n_events do a.events[i] = ARGV[20 + 2 * n_attempts + i] end
for i = 1, 2 * n_timers do a.timers[i] = ARGV[20 + 2 * n_attempts + n_events + i] end

-- Inputs are recorded in the order they arrived: while a coordinator holds the lease (it may be about
-- to record messages it read) or messages wait in the inbox (a signal, a cancel request), the report
-- joins them; so does the report of an attempt that is no longer the current one (reclaimed as lost).
local allowed = append_allowed(a)
-- one command for both: the lease is held, or the inbox has messages (an empty list does not exist)
if not finish_attempt(r) or not allowed or redis.call('EXISTS', a.lease_key, a.inbox_key) > 0 then
  queue_report(r)
  return -1
end
a.uncounted = true  -- nothing waits in the inbox, and nothing is pushed while this script runs
return append_write(a)
