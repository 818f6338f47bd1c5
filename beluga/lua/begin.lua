#!lua
-- begin.lua: a coordinator takes a run's lease and reads the run, in one round trip (Fleet.begin).
--
-- KEYS
--   lease_key       <t>:<id>:lease, the coordinator's lease token
--   run_key         <t>:<id>:run, hash: run_id, version, ...
--   inbox_key       <t>:<id>:inbox, list of messages for the coordinator
--   events_key      <t>:<id>:events, stream of the events once more than 8, an entry per append (lib/events.lua)
-- ARGV
--   token           the new lease token
--   ttl_ms          the lease's time to live, in milliseconds
--   limit           how many inbox messages to read, at most
--   known_version   the version the caller has cached, 0 for none
-- Returns {} when another coordinator holds the lease, else {run_id or '', version, n, n messages...,
-- events past known_version...} (see lib/lease.lua).

-- #include "lib/events.lua"
-- #include "lib/lease.lua"

return take_lease_and_read({
  lease_key = KEYS[1], run_key = KEYS[2], inbox_key = KEYS[3], events_key = KEYS[4],
  token = ARGV[1], ttl_ms = ARGV[2], limit = tonumber(ARGV[3]), known_version = tonumber(ARGV[4]),
})
