#!lua
-- append.lua: the store's conditional append of one run's events (RedisStore.append_one). For the
-- fleet, in the same atomic step: consume inbox messages, allow activity attempts, release the lease.
--
-- KEYS
--   run_key            <t>:<id>:run, hash: run_id, version, status, summary, updated, ...
--   events_key         <t>:<id>:events, stream of the events once more than 8, an entry per append (lib/events.lua)
--   inbox_key          <t>:<id>:inbox, list of messages for the coordinator
--   lease_key          <t>:<id>:lease, the coordinator's lease token
--   dispatched_key     sorted set: "<id>\0<seq>\0<attempt>" -> deadline, for each attempt allowed to run
--   timers_key         sorted set: "<id>\0<message>" -> due time (the fleet's durable timers)
-- ARGV
--   run_id             the run the writer read
--   expected_version   the version the writer read; its events get ids expected_version + 1, ...
--   inbox_used         how many inbox messages the events record (consumed from the inbox's head)
--   status             the run's new status, or ''
--   summary            the run's new encoded summary, or ''
--   updated            the update time, or ''
--   lease_token        the lease to release if still held with this token, or ''
--   dispatch_deadline  until when the allowed attempts count as dispatched
--   workflow_id        the run's workflow id
--   index_prefix       <t>:index:, the shard's listing indexes: a closing append relists the run (lib/index.lua)
--   #attempts          how many (seq, attempt) pairs follow
--   #events            how many events follow them
--   #timers            how many (due, member) pairs follow them
--   attempts...        (seq, attempt) pairs allowed to run
--   events...          the encoded events
--   timers...          (due, member) pairs: durable timers armed in the same step
-- Returns -1 when refused (the run is not at run_id and expected_version), -2 when its history is not
-- whole (events lost: nothing is appended past the hole), else how many messages are left in the inbox.

-- #include "lib/events.lua"
-- #include "lib/index.lua"
-- #include "lib/append.lua"

local a = {
  run_key = KEYS[1], events_key = KEYS[2], inbox_key = KEYS[3], lease_key = KEYS[4],
  dispatched_key = KEYS[5], timers_key = KEYS[6],
  run_id = ARGV[1], expected_version = tonumber(ARGV[2]), inbox_used = tonumber(ARGV[3]), status = ARGV[4],
  summary = ARGV[5], updated = ARGV[6], lease_token = ARGV[7], dispatch_deadline = ARGV[8], workflow_id = ARGV[9],
  index_prefix = ARGV[10], attempts = {}, events = {}, timers = {},
}
local n_attempts, n_events, n_timers = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
for i = 1, 2 * n_attempts do a.attempts[i] = ARGV[13 + i] end
for i = 1, n_events do a.events[i] = ARGV[13 + 2 * n_attempts + i] end
for i = 1, 2 * n_timers do a.timers[i] = ARGV[13 + 2 * n_attempts + n_events + i] end

local result = {append_allowed(a)}  -- allowed, and 'lost' when the history is not whole
if result[2] == 'lost' then return -2 end
if not result[1] then return -1 end
return append_write(a)
