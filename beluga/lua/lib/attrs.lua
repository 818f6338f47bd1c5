-- lib/attrs.lua: a run's search-attribute indexes (beluga/stores/redis_search.py), sorted sets of its
-- shard named from `prefix` ('<t>:index:'): `sa:<name>:<kind>=<value>` for a keyword or bool (scored by
-- the run's creation time: listed a page at a time, as the other indexes), `sa:<name>:<kind>` for a
-- number or datetime (scored by the value: read by range). The run hash's field `sa` keeps the names it
-- is listed under (JSON), so the step that changes its attributes, or replaces the run, unlists it from
-- the old ones. Included by create.lua, start.lua (through lib/create.lua) and append_attrs.lua.

-- Lists the run under `entries` (JSON [[index suffix, score or '' for `created`], ...], or '' for none)
-- in place of what it was listed under.
local function attrs_index(prefix, run_key, workflow_id, entries, created)
  local old = redis.call('HGET', run_key, 'sa')
  if old then
    for _, suffix in ipairs(cjson.decode(old)) do redis.call('ZREM', prefix .. suffix, workflow_id) end
  end
  if entries == '' then
    if old then redis.call('HDEL', run_key, 'sa') end
    return
  end
  local names = {}
  for _, entry in ipairs(cjson.decode(entries)) do
    local score = entry[2]
    if score == '' then score = created end
    redis.call('ZADD', prefix .. entry[1], score, workflow_id)
    names[#names + 1] = entry[1]
  end
  redis.call('HSET', run_key, 'sa', cjson.encode(names))
end
