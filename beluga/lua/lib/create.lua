-- lib/create.lua: starting a run, as one function over one table `c`:
--   c.run_key, c.events_key, c.inbox_key   keys
--   c.run_id, c.status, c.summary, c.workflow_type, c.created, c.replace_run_id ('' for none), c.updated
--   c.workflow_id, c.index_prefix          the run's id, and its shard's listing indexes ('<t>:index:')
--   c.attrs    its search-attribute index entries (lib/attrs.lua), or ''
--   c.events   {encoded event, ...}: the run's first events, ids 1, 2, ...
-- Included by create.lua (the store's create) and start.lua (the fleet client's start), after
-- lib/events.lua, lib/index.lua and lib/attrs.lua.

-- Creates the run, replacing a closed one or the open run replace_run_id (given: only that run), and
-- lists it in the same step (lib/index.lua). Returns '' when the id had no run, '+' when the new run
-- replaced one, else the id of the open run that blocks it. The inbox is kept when the new run continues
-- the run replace_run_id (continue-as-new: what waits there is for the new run), else cleared.
local function create_run(c)
  local cur = redis.call('HMGET', c.run_key, 'run_id', 'status', 'type')
  -- a continuation replaces only the run it continues (it may have been created already, by its backup)
  if cur[1] and c.replace_run_id ~= '' and cur[1] ~= c.replace_run_id then return cur[1] end
  if cur[1] and cur[2] == 'running' and cur[1] ~= c.replace_run_id then return cur[1] end
  if not (cur[1] and cur[1] == c.replace_run_id) then redis.call('DEL', c.inbox_key) end
  -- a new id's events too: a stream left by a run whose hash was lost must not hold the new run's
  events_clear(c.run_key, c.events_key)
  if cur[1] then redis.call('HDEL', c.run_key, 'request', 'lost') end
  events_append(c.run_key, c.events_key, 0, c.events, {'run_id', c.run_id, 'status', c.status, 'summary',
                c.summary, 'type', c.workflow_type, 'created', c.created, 'updated', c.updated, 'version', #c.events})
  if cur[1] then
    index_forget(c.index_prefix, c.workflow_id, cur[3] ~= c.workflow_type and cur[3] or nil,
                 cur[2] ~= c.status and cur[2] or nil)
  end
  index_add(c.index_prefix, c.workflow_id, c.workflow_type, c.status, c.created)
  if c.attrs ~= '' or cur[1] then attrs_index(c.index_prefix, c.run_key, c.workflow_id, c.attrs, c.created) end
  if cur[1] then return '+' end
  return ''
end
