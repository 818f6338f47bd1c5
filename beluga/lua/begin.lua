-- begin.lua: a coordinator takes a run's lease and reads the run, in one round trip (Fleet.begin).
--
-- KEYS
--   lease_key       <p>:{id}:lease, the coordinator's lease token
--   run_key         <p>:{id}:run, hash: run_id, version, ...
--   inbox_key       <p>:{id}:inbox, list of messages for the coordinator
--   events_key      <p>:{id}:events, stream, entry 0-<event id>
-- ARGV
--   token           the new lease token
--   ttl_ms          the lease's time to live, in milliseconds
--   limit           how many inbox messages to read, at most
--   known_version   the version the caller has cached, 0 for none
-- Returns {} when another coordinator holds the lease, else {run_id or '', version, n, n messages...,
-- events past known_version...} (see lib/lease.lua).

-- #include "lib/lease.lua"

return take_lease_and_read({
  lease_key = KEYS[1], run_key = KEYS[2], inbox_key = KEYS[3], events_key = KEYS[4],
  token = ARGV[1], ttl_ms = ARGV[2], limit = tonumber(ARGV[3]), known_version = tonumber(ARGV[4]),
})
