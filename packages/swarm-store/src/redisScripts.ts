/**
 * The Lua scripts of the Redis swarm store (see the key layout in redis.ts).
 * Every script gets the same KEYS: the keys of ONE stream, in the order of
 * STREAM_KEYS, all sharing the hash tag {streamId}, so a script runs on one
 * slot of a Redis Cluster and is atomic. Numbers cross the Lua boundary as
 * decimal strings (`int`), because Lua's own number formatting keeps only 14
 * digits; stored records are cjson objects whose values are all strings.
 */

/** Suffixes of a stream's keys, in the order the scripts expect them as KEYS[1..n]. */
export const STREAM_KEYS = [
  "meta",
  "manifest",
  "peers",
  "have",
  "seen",
  "viewers",
  "seeders",
  "avail",
  "availc",
  "xfers",
  "xferexp",
] as const;

const COMMON = `
local K_META, K_MANIFEST, K_PEERS, K_HAVE, K_SEEN, K_VIEWERS, K_SEEDERS, K_AVAIL, K_AVAILC, K_XFERS, K_XFEREXP =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]

local function int(n) return string.format('%d', n) end

-- Chunk ranges travel and rest as "f-l,f-l" (sorted, disjoint, non-adjacent);
-- in Lua as a flat array {f1, l1, f2, l2, ...}.
local function parse_ranges(s)
  local out = {}
  if not s or s == '' then return out end
  for a, b in string.gmatch(s, '(%d+)%-(%d+)') do
    out[#out + 1] = tonumber(a)
    out[#out + 1] = tonumber(b)
  end
  return out
end
local function format_ranges(rs)
  local parts = {}
  for i = 1, #rs, 2 do parts[#parts + 1] = int(rs[i]) .. '-' .. int(rs[i + 1]) end
  return table.concat(parts, ',')
end
local function ranges_total(rs)
  local n = 0
  for i = 1, #rs, 2 do n = n + rs[i + 1] - rs[i] + 1 end
  return n
end
local function ranges_add(rs, f, l)
  local out, placed = {}, false
  for i = 1, #rs, 2 do
    local a, b = rs[i], rs[i + 1]
    if b + 1 < f then
      out[#out + 1] = a; out[#out + 1] = b
    elseif l + 1 < a then
      if not placed then out[#out + 1] = f; out[#out + 1] = l; placed = true end
      out[#out + 1] = a; out[#out + 1] = b
    else
      if a < f then f = a end
      if b > l then l = b end
    end
  end
  if not placed then out[#out + 1] = f; out[#out + 1] = l end
  return out
end
-- parts of [f, l] not in rs
local function ranges_gaps(rs, f, l)
  local out, cur = {}, f
  for i = 1, #rs, 2 do
    local a, b = rs[i], rs[i + 1]
    if b >= cur then
      if a > l then break end
      if a > cur then out[#out + 1] = cur; out[#out + 1] = math.min(a - 1, l) end
      cur = b + 1
      if cur > l then return out end
    end
  end
  if cur <= l then out[#out + 1] = cur; out[#out + 1] = l end
  return out
end
-- parts of rs inside [f, l]
local function ranges_clip(rs, f, l)
  local out = {}
  for i = 1, #rs, 2 do
    local a, b = rs[i], rs[i + 1]
    if a > l then break end
    if b >= f then out[#out + 1] = math.max(a, f); out[#out + 1] = math.min(b, l) end
  end
  return out
end

-- Transfer id lists ("12,15") of a peer record: bounded by the slot limits.
local function list_items(s)
  local out = {}
  for x in string.gmatch(s, '[^,]+') do out[#out + 1] = x end
  return out
end
local function list_add(s, id) if s == '' then return id end return s .. ',' .. id end
local function list_del(s, id)
  local out = {}
  for x in string.gmatch(s, '[^,]+') do if x ~= id then out[#out + 1] = x end end
  return table.concat(out, ',')
end

local function chunk_count() return tonumber(redis.call('HGET', K_META, 'chunkCount')) end
local function bump() redis.call('HINCRBY', K_META, 'epoch', 1) end

-- Availability: segment starts in K_AVAIL (member = score = first chunk),
-- the segment's count in K_AVAILC; a segment lasts up to the next start.
local function seg_floor(n)
  return tonumber(redis.call('ZREVRANGEBYSCORE', K_AVAIL, n, '-inf', 'LIMIT', 0, 1)[1])
end
local function seg_split(n)
  local s = seg_floor(n)
  if s ~= n then
    redis.call('ZADD', K_AVAIL, n, int(n))
    redis.call('HSET', K_AVAILC, int(n), redis.call('HGET', K_AVAILC, int(s)))
  end
end
local function seg_merge(n)
  if n <= 0 then return end
  local c = redis.call('HGET', K_AVAILC, int(n))
  if not c then return end
  if redis.call('HGET', K_AVAILC, int(seg_floor(n - 1))) == c then
    redis.call('ZREM', K_AVAIL, int(n))
    redis.call('HDEL', K_AVAILC, int(n))
  end
end
-- O(log n + segments in [f, l])
local function avail_add(size, f, l, delta)
  if f < 0 then f = 0 end
  if l > size - 1 then l = size - 1 end
  if f > l or delta == 0 then return end
  seg_split(f)
  if l + 1 < size then seg_split(l + 1) end
  for _, s in ipairs(redis.call('ZRANGEBYSCORE', K_AVAIL, f, l)) do redis.call('HINCRBY', K_AVAILC, s, delta) end
  if l + 1 < size then seg_merge(l + 1) end
  seg_merge(f)
end

-- Peer records: h host, p port, r role, m mode, pos, sv served, fl failures,
-- st strikes, bd bad, bn banned (0/1), dl/ul transfer ids it fetches/serves.
local PNUM = { 'p', 'pos', 'sv', 'fl', 'st', 'bd', 'bn' }
local function get_peer(id)
  local s = redis.call('HGET', K_PEERS, id)
  if not s then return nil end
  local t = cjson.decode(s)
  for _, k in ipairs(PNUM) do t[k] = tonumber(t[k]) end
  return t
end
local function put_peer(id, t)
  local o = {}
  for k, v in pairs(t) do
    if type(v) == 'number' then o[k] = int(v) else o[k] = v end
  end
  redis.call('HSET', K_PEERS, id, cjson.encode(o))
end
local function counts(p) return p.r ~= 'seeder' and p.p > 0 and p.bn == 0 end
local function avail_holdings(p, id, delta)
  local size = chunk_count()
  local hv = parse_ranges(redis.call('HGET', K_HAVE, id))
  for i = 1, #hv, 2 do avail_add(size, hv[i], hv[i + 1], delta) end
end

-- Removes a transfer; returns its stored record or nil. skip: a peer whose record is going away anyway.
local function drop_transfer(id, skip)
  local s = redis.call('HGET', K_XFERS, id)
  if not s then return nil end
  local t = cjson.decode(s)
  redis.call('HDEL', K_XFERS, id)
  redis.call('ZREM', K_XFEREXP, id)
  if t.f ~= skip then
    local p = get_peer(t.f)
    if p then p.dl = list_del(p.dl, id); put_peer(t.f, p) end
  end
  if t.s ~= skip then
    local p = get_peer(t.s)
    if p then p.ul = list_del(p.ul, id); put_peer(t.s, p) end
  end
  if t.c == '1' then avail_add(chunk_count(), tonumber(t.a), tonumber(t.b), -1) end
  bump()
  return s
end

-- Removes a peer with its holdings and transfers; returns (dropped records, record) or nil.
local function remove_peer(id)
  local p = get_peer(id)
  if not p then return nil end
  local dropped = {}
  for _, x in ipairs(list_items(p.dl)) do
    local s = drop_transfer(x, id)
    if s then dropped[#dropped + 1] = s end
  end
  for _, x in ipairs(list_items(p.ul)) do
    local s = drop_transfer(x, id)
    if s then dropped[#dropped + 1] = s end
  end
  if counts(p) then avail_holdings(p, id, -1) end
  redis.call('HDEL', K_PEERS, id)
  redis.call('HDEL', K_HAVE, id)
  redis.call('ZREM', K_SEEN, id)
  if p.r == 'seeder' then redis.call('SREM', K_SEEDERS, id) else redis.call('ZREM', K_VIEWERS, id) end
  bump()
  return dropped, p
end

-- 1 when the global expiry index may lack an entry as early as score (the zset's earliest was later, or none).
local function needs_index(zkey, score)
  local e = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if e[2] == nil or tonumber(e[2]) > score then return 1 end
  return 0
end
`;

/** Script bodies by command name; each runs with COMMON in front. */
const BODIES = {
  // ARGV: streamId name size chunkSize version kind createdMs chunkCount
  dsCreateStream: `
if redis.call('EXISTS', K_META) == 0 then
  redis.call('HSET', K_META, 'streamId', ARGV[1], 'name', ARGV[2], 'size', ARGV[3], 'chunkSize', ARGV[4],
    'version', ARGV[5], 'kind', ARGV[6], 'createdMs', ARGV[7], 'chunkCount', ARGV[8], 'status', 'accepted',
    'readyMs', '0', 'epoch', '0')
  redis.call('ZADD', K_AVAIL, 0, '0')
  redis.call('HSET', K_AVAILC, '0', '0')
end
return 1`,

  // ARGV: manifest nowMs -> the stream's name, or 0 when unknown
  dsMarkReady: `
if redis.call('EXISTS', K_META) == 0 then return 0 end
redis.call('HSET', K_META, 'status', 'ready', 'readyMs', ARGV[2])
redis.call('SET', K_MANIFEST, ARGV[1])
return redis.call('HGET', K_META, 'name')`,

  // -> the stream's name or nil
  dsRemoveStream: `
local name = redis.call('HGET', K_META, 'name')
redis.call('DEL', unpack(KEYS))
return name`,

  dsPeerCounts: `return { redis.call('HLEN', K_PEERS), redis.call('SCARD', K_SEEDERS) }`,

  // ARGV: peerId host port role mode position nowMs have -> {joined, needsIndex, dropped...}
  dsJoinPeer: `
if redis.call('EXISTS', K_META) == 0 then return { 0, 0 } end
local id = ARGV[1]
local dropped = remove_peer(id) or {}
local size = chunk_count()
local src, hv = parse_ranges(ARGV[8]), {}
for i = 1, #src, 2 do
  local f, l = src[i], math.min(src[i + 1], size - 1)
  if f <= l then hv[#hv + 1] = f; hv[#hv + 1] = l end
end
local p = { h = ARGV[2], p = tonumber(ARGV[3]), r = ARGV[4], m = ARGV[5], pos = tonumber(ARGV[6]),
  sv = 0, fl = 0, st = 0, bd = 0, bn = 0, dl = '', ul = '' }
put_peer(id, p)
redis.call('HSET', K_HAVE, id, format_ranges(hv))
local now = tonumber(ARGV[7])
local idx = needs_index(K_SEEN, now)
redis.call('ZADD', K_SEEN, now, id)
if p.r == 'seeder' then redis.call('SADD', K_SEEDERS, id) else redis.call('ZADD', K_VIEWERS, 0, id) end
if counts(p) then
  for i = 1, #hv, 2 do avail_add(size, hv[i], hv[i + 1], 1) end
end
bump()
local out = { 1, idx }
for _, s in ipairs(dropped) do out[#out + 1] = s end
return out`,

  // ARGV: peerId -> dropped transfer records
  dsLeavePeer: `return remove_peer(ARGV[1]) or {}`,

  // ARGV: peerId -> {record, holdings, lastSeen} or nil
  dsGetPeer: `
local rec = redis.call('HGET', K_PEERS, ARGV[1])
if not rec then return nil end
return { rec, redis.call('HGET', K_HAVE, ARGV[1]), redis.call('ZSCORE', K_SEEN, ARGV[1]) }`,

  // ARGV: peerId ranges -> chunks newly held
  dsAddHoldings: `
local id = ARGV[1]
local p = get_peer(id)
if not p then return 0 end
local size = chunk_count()
local hv = parse_ranges(redis.call('HGET', K_HAVE, id))
local before = ranges_total(hv)
local src = parse_ranges(ARGV[2])
local c = counts(p)
for i = 1, #src, 2 do
  local f, l = src[i], math.min(src[i + 1], size - 1)
  if f <= l then
    if c then
      local g = ranges_gaps(hv, f, l)
      for j = 1, #g, 2 do avail_add(size, g[j], g[j + 1], 1) end
    end
    hv = ranges_add(hv, f, l)
  end
end
local added = ranges_total(hv) - before
if added > 0 then
  redis.call('HSET', K_HAVE, id, format_ranges(hv))
  bump()
end
return added`,

  // ARGV: peerId position
  dsSetPosition: `
local p = get_peer(ARGV[1])
if p then p.pos = tonumber(ARGV[2]); put_peer(ARGV[1], p) end
return 1`,

  // ARGV: nowMs peerId... -> ids of the peers not in the stream (the others get lastSeen = nowMs)
  dsTouchPeers: `
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', K_SEEN, ARGV[i]) then
    redis.call('ZADD', K_SEEN, ARGV[1], ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing`,

  // ARGV: peerId outcome banAfterBad banAfterStrikes -> {served failures strikes bad banned} or nil
  dsRecordOutcome: `
local id, o = ARGV[1], ARGV[2]
local p = get_peer(id)
if not p then return nil end
if o == 'ok' then p.sv = p.sv + 1; p.st = 0
elseif o == 'failed' then p.fl = p.fl + 1; p.st = p.st + 1
else p.bd = p.bd + 1 end
local ban = p.bd >= tonumber(ARGV[3]) or (p.r ~= 'seeder' and p.st >= tonumber(ARGV[4]))
if ban and p.bn == 0 then
  if counts(p) then avail_holdings(p, id, -1) end
  p.bn = 1
  bump()
end
put_peer(id, p)
return { p.sv, p.fl, p.st, p.bd, p.bn }`,

  // ARGV: first last -> flat {first, last, count, ...}
  dsAvailability: `
local cc = redis.call('HGET', K_META, 'chunkCount')
if not cc then return {} end
local size = tonumber(cc)
local f, l = math.max(0, tonumber(ARGV[1])), math.min(size - 1, tonumber(ARGV[2]))
if f > l then return {} end
local starts = redis.call('ZRANGEBYSCORE', K_AVAIL, seg_floor(f), l)
local out = {}
-- counts by HMGET in batches (unpack has a stack limit)
for j = 1, #starts, 512 do
  local batch = {}
  for i = j, math.min(j + 511, #starts) do batch[#batch + 1] = starts[i] end
  local cs = redis.call('HMGET', K_AVAILC, unpack(batch))
  for k, s in ipairs(batch) do
    local i = j + k - 1
    local b = l
    if starts[i + 1] then b = math.min(l, tonumber(starts[i + 1]) - 1) end
    out[#out + 1] = math.max(tonumber(s), f)
    out[#out + 1] = b
    out[#out + 1] = tonumber(cs[k])
  end
end
return out`,

  // ARGV: exclude limit maxUploadsPeer maxUploadsSeeder first last
  // -> flat {peerId, host, port, role, holdings, uploads, served, failures, strikes, bad} per candidate
  dsSources: `
local cc = redis.call('HGET', K_META, 'chunkCount')
local limit = tonumber(ARGV[2])
if not cc or limit <= 0 then return {} end
local size = tonumber(cc)
local f, l = math.max(0, tonumber(ARGV[5])), math.min(size - 1, tonumber(ARGV[6]))
if f > l then return {} end
local maxP, maxS = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local function consider(id)
  if id == ARGV[1] then return false end
  local p = get_peer(id)
  if not p or p.bn == 1 or p.p == 0 then return false end
  local ups = #list_items(p.ul)
  local max = maxP
  if p.r == 'seeder' then max = maxS end
  if ups >= max then return false end
  local held = ranges_clip(parse_ranges(redis.call('HGET', K_HAVE, id)), f, l)
  if #held == 0 then return false end
  for _, v in ipairs({ id, p.h, p.p, p.r, format_ranges(held), ups, p.sv, p.fl, p.st, p.bd }) do out[#out + 1] = v end
  return true
end
for _, id in ipairs(redis.call('SMEMBERS', K_SEEDERS)) do consider(id) end
local probes = math.min(redis.call('ZCARD', K_VIEWERS), 4 * limit)
if probes == 0 then return out end
local cursor = redis.call('HGET', K_META, 'cursor')
local ids
if not cursor then
  ids = redis.call('ZRANGEBYLEX', K_VIEWERS, '-', '+', 'LIMIT', 0, probes)
else
  ids = redis.call('ZRANGEBYLEX', K_VIEWERS, '(' .. cursor, '+', 'LIMIT', 0, probes)
  if #ids < probes then
    for _, id in ipairs(redis.call('ZRANGEBYLEX', K_VIEWERS, '-', '[' .. cursor, 'LIMIT', 0, probes - #ids)) do
      ids[#ids + 1] = id
    end
  end
end
local found, last = 0, nil
for _, id in ipairs(ids) do
  if found >= limit then break end
  last = id
  if consider(id) then found = found + 1 end
end
if last then redis.call('HSET', K_META, 'cursor', last) end
return out`,

  // ARGV: id fetcher server serverRole first last startedMs expiresMs maxDownloads maxUploadsPeer maxUploadsSeeder
  // -> {result, needsIndex}
  dsAddTransfer: `
if redis.call('EXISTS', K_META) == 0 then return { 'unknown-peer', 0 } end
local id, fid, sid = ARGV[1], ARGV[2], ARGV[3]
local fp, sp = get_peer(fid), get_peer(sid)
if not fp or not sp then return { 'unknown-peer', 0 } end
if sp.bn == 1 then return { 'banned', 0 } end
if #list_items(fp.dl) >= tonumber(ARGV[9]) then return { 'fetcher-busy', 0 } end
local max = tonumber(ARGV[10])
if sp.r == 'seeder' then max = tonumber(ARGV[11]) end
if #list_items(sp.ul) >= max then return { 'server-busy', 0 } end
local c = '0'
if counts(fp) then c = '1' end
redis.call('HSET', K_XFERS, id, cjson.encode({ id = id, f = fid, s = sid, sr = ARGV[4], a = ARGV[5], b = ARGV[6],
  t0 = ARGV[7], te = ARGV[8], c = c }))
local te = tonumber(ARGV[8])
local idx = needs_index(K_XFEREXP, te)
redis.call('ZADD', K_XFEREXP, te, id)
fp.dl = list_add(fp.dl, id)
put_peer(fid, fp)
sp = get_peer(sid)
sp.ul = list_add(sp.ul, id)
put_peer(sid, sp)
if c == '1' then avail_add(chunk_count(), tonumber(ARGV[5]), tonumber(ARGV[6]), 1) end
return { 'ok', idx }`,

  // ARGV: transferId -> record or nil
  dsTakeTransfer: `return drop_transfer(ARGV[1], nil)`,

  // ARGV: fetcherId -> records
  dsTransfersOf: `
local p = get_peer(ARGV[1])
local out = {}
if not p then return out end
for _, id in ipairs(list_items(p.dl)) do
  local s = redis.call('HGET', K_XFERS, id)
  if s then out[#out + 1] = s end
end
return out`,

  // ARGV: nowMs -> records of the transfers due
  dsExpireTransfers: `
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_XFEREXP, '-inf', ARGV[1])) do
  local s = drop_transfer(id, nil)
  if s then out[#out + 1] = s end
end
return out`,

  // ARGV: cutoffMs -> flat {peerId, role, n, record x n, ...} of the peers last seen at or before the cutoff
  dsExpirePeers: `
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', ARGV[1])) do
  local dropped, p = remove_peer(id)
  if p then
    out[#out + 1] = id
    out[#out + 1] = p.r
    out[#out + 1] = #dropped
    for _, s in ipairs(dropped) do out[#out + 1] = s end
  end
end
return out`,
} as const;

export type ScriptName = keyof typeof BODIES;

/** Complete script sources by command name, for ioredis `defineCommand`. */
export const STREAM_SCRIPTS: ReadonlyArray<[ScriptName, string]> = (Object.keys(BODIES) as ScriptName[]).map((n) => [
  n,
  COMMON + BODIES[n],
]);

/**
 * Scripts over ONE global key (KEYS[1]); separate from the stream scripts so
 * that no script spans two slots.
 */
export const GLOBAL_SCRIPTS = {
  /** Name index: points ARGV[1] (name) at ARGV[2] (stream id); returns the id it pointed to before. */
  dsPointName: `
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return before`,
  /** Name index: removes ARGV[1] (name) only if it still points at ARGV[2]. */
  dsUnpointName: `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`,
  /** Lease KEYS[1]: taken by ARGV[1] for ARGV[2] ms when free (or expired), renewed when ARGV[1] holds it; 1 if held. */
  dsAcquireLease: `
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`,
  /** Lease KEYS[1]: deleted only if ARGV[1] holds it. */
  dsReleaseLease: `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`,
} as const;
