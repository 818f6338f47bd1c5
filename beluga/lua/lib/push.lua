-- lib/push.lua: a client's input for an open run, queued in its inbox, as one function over one table `p`:
--   p.run_key, p.inbox_key, p.requests_key, p.dirty_key, p.wake_key, p.waking_key   keys
--   p.message, p.request_id ('' for none), p.workflow_id, p.now, p.ttl_ms
-- Included by push.lua (signal, cancel, terminate) and start.lua (signal-with-start), after lib/wake.lua.

-- Returns 0 when queued (and the shard's wake task is on its way), 2 when queued and the caller must send
-- the shard's wake task, 1 when this request was queued before, -1 when there is no such run, -2 when the
-- run is closed. A queued input marks the run dirty and adds it to its shard's wake set.
local function push_input(p)
  if p.request_id ~= '' and redis.call('SISMEMBER', p.requests_key, p.request_id) == 1 then return 1 end
  local status = redis.call('HGET', p.run_key, 'status')
  if not status then return -1 end
  if status ~= 'running' then return -2 end
  if p.request_id ~= '' then
    redis.call('SADD', p.requests_key, p.request_id)
    redis.call('EXPIRE', p.requests_key, 86400)
  end
  redis.call('RPUSH', p.inbox_key, p.message)
  redis.call('ZADD', p.dirty_key, p.now, p.workflow_id)
  redis.call('SADD', p.wake_key, p.workflow_id)
  return 2 * wake_task_needed(p.wake_key, p.waking_key, p.ttl_ms)
end
