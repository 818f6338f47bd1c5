-- lib/events.lua: where a run's history lives. While a run has at most 8 events (RedisStore.INLINE_EVENTS)
-- they are fields e:1 ... e:8 of its run hash: a parked run then costs no key, and no stream node, of its
-- own. Once it has more, all its events are the list events_key, event i at index i - 1. Which of the two
-- holds them follows from the run's version alone. Included by every script that writes or reads events.

-- The most events kept in the run hash.
local function events_inline_max()
  return 8
end

-- The encoded events after `after` up to `version` (the run's current version), in order.
local function events_read(run_key, events_key, version, after)
  if after >= version then return {} end
  if version <= events_inline_max() then
    local fields = {}
    for i = after + 1, version do fields[#fields + 1] = 'e:' .. i end
    return redis.call('HMGET', run_key, unpack(fields))
  end
  return redis.call('LRANGE', events_key, after, -1)
end

-- Appends `events` (encoded) to a run that has `version` events, moving them all to the list when the
-- run outgrows its hash.
local function events_append(run_key, events_key, version, events)
  local n = #events
  if n == 0 then return end
  local inline = events_inline_max()
  if version + n <= inline then
    local args = {}
    for i, event in ipairs(events) do
      args[#args + 1] = 'e:' .. (version + i)
      args[#args + 1] = event
    end
    redis.call('HSET', run_key, unpack(args))
    return
  end
  if version > 0 and version <= inline then
    local fields = {}
    for i = 1, version do fields[i] = 'e:' .. i end
    redis.call('RPUSH', events_key, unpack(redis.call('HMGET', run_key, unpack(fields))))
    redis.call('HDEL', run_key, unpack(fields))
  end
  for i = 1, n, 1000 do  -- unpack() has a limit on how many values it returns
    redis.call('RPUSH', events_key, unpack(events, i, math.min(n, i + 999)))
  end
end

-- Forgets a run's history (a new run of the same workflow id starts afresh).
local function events_clear(run_key, events_key)
  local fields = {}
  for i = 1, events_inline_max() do fields[i] = 'e:' .. i end
  redis.call('HDEL', run_key, unpack(fields))
  redis.call('DEL', events_key)
end
