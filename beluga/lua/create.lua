-- create.lua: starts a run (RedisStore.create), replacing a closed one or the open run replace_run_id.
--
-- KEYS
--   run_key         <p>:{id}:run, hash: run_id, status, summary, type, created, updated, version
--   events_key      <p>:{id}:events, stream, entry 0-<event id>
--   inbox_key       <p>:{id}:inbox, list of messages for the coordinator
-- ARGV
--   run_id          the new run's id
--   status          its status
--   summary         its encoded summary
--   workflow_type   its workflow type
--   created         its creation time
--   replace_run_id  the open run it may replace, or ''
--   updated         its update time
--   #events         how many events follow
--   events...       its first events, ids 1, 2, ...
-- Returns '' when created, else the id of the open run that blocks it. The inbox is kept when the new
-- run continues the run replace_run_id (continue-as-new: what waits there is for the new run), else
-- cleared.

local run_key, events_key, inbox_key = KEYS[1], KEYS[2], KEYS[3]
local run_id, status, summary, workflow_type = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local created, replace_run_id, updated = ARGV[5], ARGV[6], ARGV[7]
local n_events = tonumber(ARGV[8])

local cur = redis.call('HMGET', run_key, 'run_id', 'status')
if cur[1] and cur[2] == 'running' and cur[1] ~= replace_run_id then return cur[1] end
if not (cur[1] and cur[1] == replace_run_id) then redis.call('DEL', inbox_key) end
redis.call('DEL', events_key)
for v = 1, n_events do
  redis.call('XADD', events_key, '0-' .. v, 'e', ARGV[8 + v])
end
redis.call('HSET', run_key, 'run_id', run_id, 'status', status, 'summary', summary, 'type', workflow_type,
           'created', created, 'updated', updated, 'version', n_events)
return ''
