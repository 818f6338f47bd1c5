-- lib/wake.lua: waking a shard's runs in batches. A run that needs a coordinator is added to its shard's
-- set wake_key; one `beluga.wake` task per shard at a time pops that set and coordinates the runs, and
-- waking_key (a lease with a time to live) says that such a task is queued or running. Included by
-- push.lua, wake.lua, drain_timers.lua and sweep.lua.

-- 1 when the caller must send the shard's wake task (runs wait and no task is queued or running, which
-- it now notes), else 0.
local function wake_task_needed(wake_key, waking_key, ttl_ms)
  if redis.call('SCARD', wake_key) > 0 and redis.call('SET', waking_key, '1', 'NX', 'PX', ttl_ms) then return 1 end
  return 0
end
