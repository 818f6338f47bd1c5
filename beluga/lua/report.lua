#!lua
-- report.lua: an activity attempt's outcome, then begin.lua, in one round trip (Fleet.report_and_begin).
-- Retires the finished attempt and queues its report in the inbox; then, if the lease is free, takes it
-- and reads the run like begin.lua (the report is the inbox's last message); else the lease holder sees
-- the report as it lets go.
--
-- KEYS
--   lease_key         <t>:<id>:lease, the coordinator's lease token
--   run_key           <t>:<id>:run, hash: run_id, version, ...
--   inbox_key         <t>:<id>:inbox, list of messages for the coordinator
--   events_key        <t>:<id>:events, stream of the events once more than 8, an entry per append (lib/events.lua)
--   running_info_key  <t>:running:info, hash: attempt member -> encoded info (heartbeat attempts only)
--   dirty_key         <t>:dirty, sorted set: workflow id -> when its inbox got a message
--   dispatched_key    <t>:dispatched, sorted set: attempt member -> deadline
-- ARGV
--   token             the new lease token
--   ttl_ms            the lease's time to live, in milliseconds
--   limit             how many inbox messages to read, at most
--   known_version     the version the caller has cached, 0 for none
--   report            the encoded report message
--   seq               the activity's seq
--   member            the finished attempt, "<workflow id>\0<seq>\0<attempt>"
--   next_attempt      the attempt allowed next (a retry), or '' to retire the seq
--   now               the time, for the dirty mark
--   workflow_id       the run's workflow id
--   next_deadline     until when the next attempt counts as dispatched
--   heartbeat         '1' when the attempt promised heartbeats (its info is dropped), else ''
-- Returns like begin.lua: {} when another coordinator holds the lease, else the run as read.

-- #include "lib/attempt.lua"
-- #include "lib/events.lua"
-- #include "lib/lease.lua"

local r = {
  inbox_key = KEYS[3], running_info_key = KEYS[5], dirty_key = KEYS[6], dispatched_key = KEYS[7],
  report = ARGV[5], seq = ARGV[6], member = ARGV[7], next_attempt = ARGV[8], now = ARGV[9],
  workflow_id = ARGV[10], next_deadline = ARGV[11], heartbeat = ARGV[12],
}
finish_attempt(r)
queue_report(r)
return take_lease_and_read({
  lease_key = KEYS[1], run_key = KEYS[2], inbox_key = KEYS[3], events_key = KEYS[4],
  token = ARGV[1], ttl_ms = ARGV[2], limit = tonumber(ARGV[3]), known_version = tonumber(ARGV[4]),
})
