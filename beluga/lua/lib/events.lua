-- lib/events.lua: where a run's history lives. While a run has at most 8 events (RedisStore.INLINE_EVENTS)
-- they are fields e:1 ... e:8 of its run hash: a parked run then costs no key, and no stream node, of its
-- own. Once it has more, all its events are the Redis Stream events_key, event i as entry 0-i. Which of
-- the two holds them follows from the run's version alone. Included by every script that writes or reads
-- events.

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
  local out = {}
  for _, entry in ipairs(redis.call('XRANGE', events_key, '0-' .. (after + 1), '+')) do
    out[#out + 1] = entry[2][2]
  end
  return out
end

-- Appends `events` (encoded) to a run that has `version` events, moving them all to the stream when the
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
    for i, event in ipairs(redis.call('HMGET', run_key, unpack(fields))) do
      redis.call('XADD', events_key, '0-' .. i, 'e', event)
    end
    redis.call('HDEL', run_key, unpack(fields))
  end
  for i, event in ipairs(events) do
    redis.call('XADD', events_key, '0-' .. (version + i), 'e', event)
  end
end

-- Forgets a run's history (a new run of the same workflow id starts afresh).
local function events_clear(run_key, events_key)
  local fields = {}
  for i = 1, events_inline_max() do fields[i] = 'e:' .. i end
  redis.call('HDEL', run_key, unpack(fields))
  redis.call('DEL', events_key)
end
