-- lib/lease.lua: taking a run's coordinator lease and reading the run in the same step. Included by
-- begin.lua and report.lua, after lib/events.lua.

-- Takes the lease and reads the run's id and version, its first waiting messages and the events past
-- the version the caller has cached. `t` has:
--   t.lease_key, t.run_key, t.inbox_key, t.events_key   keys
--   t.token          the new lease token
--   t.ttl_ms         the lease's time to live, in milliseconds
--   t.limit          how many inbox messages to read, at most (number)
--   t.known_version  the version the caller has cached, 0 for none (number)
-- Returns {} when another coordinator holds the lease, else {run_id or '', version or '0', n, the n
-- messages..., the newer events...}; newer events only when known_version > 0 and the run is at most
-- 1000 events ahead of it (else the caller reloads the whole history).
local function take_lease_and_read(t)
  if not redis.call('SET', t.lease_key, t.token, 'NX', 'PX', t.ttl_ms) then return {} end
  local cur = redis.call('HMGET', t.run_key, 'run_id', 'version')
  local msgs = redis.call('LRANGE', t.inbox_key, 0, t.limit - 1)
  local out = {cur[1] or '', cur[2] or '0', #msgs}
  for _, m in ipairs(msgs) do out[#out + 1] = m end
  local known, version = t.known_version, tonumber(cur[2] or '0')
  if known > 0 and version > known and version - known <= 1000 then
    for _, event in ipairs(events_read(t.run_key, t.events_key, version, known)) do
      out[#out + 1] = event
    end
  end
  return out
end
