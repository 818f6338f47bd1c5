-- lib/attempt.lua: what an activity attempt's report does to the fleet's records. Included by
-- report.lua and report_and_append.lua.

-- Retires the finished attempt: if it is still the one allowed for its seq (a late report of a
-- superseded attempt must not revoke its successor), allows next_attempt (its deadline in
-- dispatched_key next_deadline) or, when next_attempt is '', forgets the seq; and drops the finished
-- attempt `member`'s deadline (and its info, when it promised heartbeats). `r` has:
--   r.attempts_key, r.dispatched_key, r.running_info_key   keys
--   r.workflow_id, r.seq, r.attempt, r.member ("<workflow id>\0<seq>\0<attempt>"), r.next_attempt,
--   r.next_deadline, r.heartbeat ('' unless the attempt kept info in running_info_key)
local function finish_attempt(r)
  if redis.call('HGET', r.attempts_key, r.seq) ~= r.attempt then
    -- superseded: only its own traces go
  elseif r.next_attempt ~= '' then
    redis.call('HSET', r.attempts_key, r.seq, r.next_attempt)
    redis.call('ZADD', r.dispatched_key, r.next_deadline, r.workflow_id .. '\0' .. r.seq .. '\0' .. r.next_attempt)
  else
    redis.call('HDEL', r.attempts_key, r.seq)
  end
  redis.call('ZREM', r.dispatched_key, r.member)
  if r.heartbeat ~= '' then redis.call('HDEL', r.running_info_key, r.member) end
end

-- Queues the report for the run's coordinator and marks the run dirty (so the sweeper finds it if no
-- coordinator comes). `r` has r.inbox_key, r.dirty_key, r.report, r.now, r.workflow_id.
local function queue_report(r)
  redis.call('RPUSH', r.inbox_key, r.report)
  redis.call('ZADD', r.dirty_key, r.now, r.workflow_id)
end
