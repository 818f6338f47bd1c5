-- lib/index.lua: the listing indexes of a run's shard, sorted sets of workflow ids by creation time:
-- <t>:index:all, <t>:index:type:<workflow type> and <t>:index:status:<status>, named from `prefix`
-- ('<t>:index:'). They carry the run's shard tag, so the step that creates a run, or closes it, lists
-- it in the same atomic step (a run that exists is always listed, even when Redis refuses the next
-- write for lack of memory). Included by lib/create.lua's callers and lib/append.lua's.

-- Lists the run under its id, type and status.
local function index_add(prefix, workflow_id, workflow_type, status, created)
  redis.call('ZADD', prefix .. 'all', created, workflow_id)
  redis.call('ZADD', prefix .. 'type:' .. workflow_type, created, workflow_id)
  redis.call('ZADD', prefix .. 'status:' .. status, created, workflow_id)
end

-- Moves the run from the index of status `was` to that of `status` (a closing append).
local function index_restatus(prefix, workflow_id, was, status, created)
  if was == status then return end
  if was then redis.call('ZREM', prefix .. 'status:' .. was, workflow_id) end
  redis.call('ZADD', prefix .. 'status:' .. status, created, workflow_id)
end

-- Drops what an earlier run of the id was listed under that the new run is not (its type and status).
local function index_forget(prefix, workflow_id, workflow_type, status)
  if workflow_type then redis.call('ZREM', prefix .. 'type:' .. workflow_type, workflow_id) end
  if status then redis.call('ZREM', prefix .. 'status:' .. status, workflow_id) end
end

-- Whether a listed id passes a listing's conditions on ids (beluga/stores/_common.py's id_matches):
-- it starts with `prefix` ('' for any) and, unless `kept_copies`, is no kept copy `<id>/runs/<n>`.
local function index_id_matches(workflow_id, prefix, kept_copies)
  if prefix ~= '' and string.sub(workflow_id, 1, #prefix) ~= prefix then return false end
  return kept_copies or not (string.find(workflow_id, '/runs/', 1, true) and string.find(workflow_id, '/runs/%d+$'))
end
