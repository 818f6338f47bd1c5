-- lib/append.lua: the store's compare-and-append of one run, as two functions over one table `a`:
--   a.run_key, a.events_key, a.inbox_key, a.lease_key, a.dispatched_key, a.timers_key  keys
--   a.run_id, a.expected_version (number), a.inbox_used (number), a.status, a.summary, a.updated,
--   a.lease_token, a.dispatch_deadline, a.workflow_id     ('' where not given)
--   a.index_prefix  '<t>:index:', the shard's listing indexes (lib/index.lua): a closing append moves the
--                run to its new status's index in the same step ('' for none)
--   a.attempts   {seq, attempt, seq, attempt, ...}: attempts allowed to run
--   a.events     {encoded event, ...}: the events to append, ids expected_version + 1 onwards
--   a.timers     {due, member, due, member, ...}: durable timers the events arm, in the same step
--   a.uncounted  optional: true when the caller saw the inbox empty in this same script (returns 0)
-- Included by append.lua (the store's append) and report_and_append.lua (the fleet's fast path), after
-- lib/events.lua and lib/index.lua.

-- Whether the run is still the writer's: the same run id, at the version the writer read, with its
-- history whole (else false, 'lost': nothing is ever appended past a hole). An append that closes the
-- run is also refused while messages it did not read wait in the inbox (a signal sent as the run
-- closed): the writer reads again and records them before the close.
local function append_allowed(a)
  local cur = redis.call('HMGET', a.run_key, 'run_id', 'version')
  if cur[1] ~= a.run_id or tonumber(cur[2]) ~= a.expected_version then return false end
  if not events_whole(a.run_key, a.events_key, a.expected_version) then return false, 'lost' end
  if a.status ~= '' and a.status ~= 'running' and redis.call('LLEN', a.inbox_key) > a.inbox_used then
    return false
  end
  return true
end

-- Writes the append (the caller checked append_allowed): arms the timers (so that a process dying right
-- after the append cannot lose one), allows the attempts (an attempt is allowed while it has a deadline
-- in dispatched_key, as "<workflow id>\0<seq>\0<attempt>" -> dispatch_deadline), appends the events,
-- sets version and the given status (listed under it), summary and update time, consumes inbox_used inbox messages and
-- releases the lease if lease_token still holds it. Returns how many inbox messages are left.
local function append_write(a)
  for i = 1, #a.timers, 2 do
    redis.call('ZADD', a.timers_key, a.timers[i], a.timers[i + 1])
  end
  for i = 1, #a.attempts, 2 do
    local seq, attempt = a.attempts[i], a.attempts[i + 1]
    redis.call('ZADD', a.dispatched_key, a.dispatch_deadline, a.workflow_id .. '\0' .. seq .. '\0' .. attempt)
  end
  local fields = {'version', a.expected_version + #a.events}
  if a.status ~= '' and a.index_prefix ~= '' then
    local cur = redis.call('HMGET', a.run_key, 'status', 'created')
    index_restatus(a.index_prefix, a.workflow_id, cur[1], a.status, cur[2] or 0)
  end
  if a.status ~= '' then fields[#fields + 1] = 'status'; fields[#fields + 1] = a.status end
  if a.summary ~= '' then fields[#fields + 1] = 'summary'; fields[#fields + 1] = a.summary end
  if a.updated ~= '' then fields[#fields + 1] = 'updated'; fields[#fields + 1] = a.updated end
  events_append(a.run_key, a.events_key, a.expected_version, a.events, fields)
  if a.inbox_used > 0 then redis.call('LTRIM', a.inbox_key, a.inbox_used, -1) end
  if a.lease_token ~= '' and redis.call('GET', a.lease_key) == a.lease_token then
    redis.call('DEL', a.lease_key)
  end
  if a.uncounted then return 0 end
  return redis.call('LLEN', a.inbox_key)
end
