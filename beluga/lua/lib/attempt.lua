-- lib/attempt.lua: what an activity attempt's report does to the fleet's records. Included by
-- report.lua and report_and_append.lua.

-- Retires the finished attempt `member`: an attempt is allowed to run while it has a deadline in
-- dispatched_key, so dropping it retires it. Only if it was still there (a late report of an attempt
-- that was reclaimed and superseded must not allow anything) is next_attempt, when given, allowed in its
-- place, until next_deadline. Drops its info when it promised heartbeats. Returns whether it was still
-- there. `r` has:
--   r.dispatched_key, r.running_info_key   keys
--   r.workflow_id, r.seq, r.member ("<workflow id>\0<seq>\0<attempt>"), r.next_attempt, r.next_deadline,
--   r.heartbeat ('' unless the attempt kept info in running_info_key)
local function finish_attempt(r)
  local current = redis.call('ZREM', r.dispatched_key, r.member) == 1
  if current and r.next_attempt ~= '' then
    redis.call('ZADD', r.dispatched_key, r.next_deadline, r.workflow_id .. '\0' .. r.seq .. '\0' .. r.next_attempt)
  end
  if r.heartbeat ~= '' then redis.call('HDEL', r.running_info_key, r.member) end
  return current
end

-- Queues the report for the run's coordinator and marks the run dirty (so the sweeper finds it if no
-- coordinator comes). `r` has r.inbox_key, r.dirty_key, r.report, r.now, r.workflow_id.
local function queue_report(r)
  redis.call('RPUSH', r.inbox_key, r.report)
  redis.call('ZADD', r.dirty_key, r.now, r.workflow_id)
end
