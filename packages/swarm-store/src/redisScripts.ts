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
  "servers",
  "seeders",
  "avail",
  "availc",
  "xfers",
  "xferexp",
  "held",
  "heldc",
  "reach",
  "hostbans",
  "pieces",
  "floor",
  "xferend",
] as const;

const COMMON = `
local K_META, K_MANIFEST, K_PEERS, K_HAVE, K_SEEN, K_SERVERS, K_SEEDERS, K_AVAIL, K_AVAILC, K_XFERS, K_XFEREXP =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local K_HELD, K_HELDC, K_REACH, K_HOSTBANS, K_PIECES = KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local K_FLOOR, K_XFEREND = KEYS[17], KEYS[18]

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
  -- each range's length first: n + last would pass 2^53 near the top of the chunk numbers
  for i = 1, #rs, 2 do n = n + (rs[i + 1] - rs[i] + 1) end
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

-- The stored records of the transfers a peer fetches (its dl list): one HMGET; O(maxDownloads).
local function fetching(p)
  local out, ids = {}, list_items(p.dl)
  if #ids == 0 then return out end
  for _, s in ipairs(redis.call('HMGET', K_XFERS, unpack(ids))) do
    if s then out[#out + 1] = s end
  end
  return out
end

-- Piecewise-constant counts over the stream's chunks [low, high], in one ZSET (K_AVAIL): a member
-- "<first chunk>:<avail>:<held>" per segment with score = first chunk (a segment always starts at low,
-- none past high); a segment lasts up to the next start (the last one up to high). avail: viewers holding
-- + copies in flight; held: viewers holding only, so the sources script knows when no viewer can serve a
-- window. Counts live in the members, so a range of segments is one ZRANGEBYSCORE with both counts, and a
-- change to both (a delivered copy turning into a holding) is one read and one write of the segments.
local function seg_parse(member)
  local p, a, h = string.match(member, '^(%d+):(%-?%d+):(%-?%d+)$')
  return tonumber(p), tonumber(a), tonumber(h)
end
local function seg_member(p, a, h) return int(p) .. ':' .. int(a) .. ':' .. int(h) end
-- Variadic command over many arguments, in batches (unpack has a stack limit).
local function call_batched(cmd, key, args, step)
  for j = 1, #args, step do
    redis.call(cmd, key, unpack(args, j, math.min(j + step - 1, #args)))
  end
end

-- Streams stored by earlier versions are converted the first time a script reads their meta (its field
-- segs: absent, then "2", now "3"). Absent: starts as members of avail and held, counts in the HASHes
-- availc and heldc; "2": avail and held with "<first chunk>:<count>" members.
local function seg_convert_1(zk, hk)
  local starts = redis.call('ZRANGE', zk, 0, -1)
  redis.call('DEL', zk)
  for j = 1, #starts, 512 do
    local batch = { unpack(starts, j, math.min(j + 511, #starts)) }
    local z = {}
    for k, c in ipairs(redis.call('HMGET', hk, unpack(batch))) do
      z[#z + 1] = batch[k]; z[#z + 1] = batch[k] .. ':' .. (c or '0')
    end
    redis.call('ZADD', zk, unpack(z))
  end
  redis.call('DEL', hk)
end
local function seg_convert_2()
  local function read(zk)
    local ps, cs = {}, {}
    for k, m in ipairs(redis.call('ZRANGE', zk, 0, -1)) do
      local p, c = string.match(m, '^(%d+):(%-?%d+)$')
      ps[k], cs[k] = tonumber(p), tonumber(c)
    end
    return ps, cs
  end
  local as, ac = read(K_AVAIL)
  local hs, hc = read(K_HELD)
  -- merge-walk the two: a segment starts wherever either count changes
  local z, i, j, a, h, la, lh = {}, 1, 1, 0, 0, nil, nil
  while i <= #as or j <= #hs do
    local p = as[i]
    if p == nil or (hs[j] ~= nil and hs[j] < p) then p = hs[j] end
    if as[i] == p then a = ac[i]; i = i + 1 end
    if hs[j] == p then h = hc[j]; j = j + 1 end
    if a ~= la or h ~= lh then z[#z + 1] = p; z[#z + 1] = seg_member(p, a, h); la, lh = a, h end
  end
  redis.call('DEL', K_AVAIL, K_HELD)
  if #z > 0 then call_batched('ZADD', K_AVAIL, z, 512) end
end

-- What the scripts read of the stream's meta, once per script (a script is atomic, so it cannot go
-- stale; the scripts that move the bounds update it): false for an unknown stream, else its chunk
-- bounds low and high (inclusive; no chunks when high < low), whether it is live (its bounds move;
-- the floor and xferend indexes are kept for it only) and whether it ended. A file stored before
-- bounds were kept has chunkCount only: low 0, high chunkCount - 1.
local META
local function meta()
  if META == nil then
    local m = redis.call('HMGET', K_META, 'kind', 'low', 'high', 'chunkCount', 'ended', 'segs')
    if not m[1] then
      META = false
    else
      META = { live = m[1] == 'live', low = tonumber(m[2] or '0'),
        high = tonumber(m[3] or (tonumber(m[4] or '0') - 1)), ended = m[5] == '1' }
      if m[6] ~= '3' then
        if m[6] ~= '2' then
          seg_convert_1(K_AVAIL, K_AVAILC)
          seg_convert_1(K_HELD, K_HELDC)
        end
        seg_convert_2()
        redis.call('HSET', K_META, 'segs', '3')
      end
    end
  end
  return META
end
local function bump() redis.call('HINCRBY', K_META, 'epoch', 1) end

-- The segment holding chunk n (the last one starting at or before it): its start, counts and member.
local function seg_at(n)
  local m = redis.call('ZREVRANGEBYSCORE', K_AVAIL, n, '-inf', 'LIMIT', 0, 1)[1]
  local p, a, h = seg_parse(m)
  return p, a, h, m
end
-- The members of the segments over [f, l] (f a chunk within the bounds), in order: from the one holding f
-- (its start at or before f) to the last starting at or before l. One command when the span has fewer than
-- SEG_PEEK segments (a directive's range has a handful), read downwards from l; three for a longer one (a
-- plan's window): O(log S + span).
local SEG_PEEK = 16
local function seg_span(f, l)
  local got = redis.call('ZREVRANGEBYSCORE', K_AVAIL, l, '-inf', 'LIMIT', 0, SEG_PEEK)
  local out = {}
  for i, m in ipairs(got) do
    if seg_parse(m) <= f then
      for j = i, 1, -1 do out[#out + 1] = got[j] end
      return out
    end
  end
  -- a segment always starts at low, so only a full reply can leave the span unfinished
  if #got < SEG_PEEK then error('availability segments: none starts at or before ' .. int(f)) end
  local from = seg_at(f)
  out = redis.call('ZRANGEBYSCORE', K_AVAIL, from, '(' .. int(seg_parse(got[#got])))
  for j = #got, 1, -1 do out[#out + 1] = got[j] end
  return out
end
-- Adds to the counts over ranges, clipped to the stream's bounds: changes is a list of {rs, da, dh}, rs
-- flat, sorted, disjoint ranges whose every chunk gets da more availability and dh more held. Reads the
-- segments over the span of all the ranges once, computes the new ones (equal neighbours merged) and
-- writes only the difference in a few variadic calls: O(log S + segments in the span + ranges), whatever
-- the fragmentation.
local function seg_apply(changes)
  local b = meta()
  local bp, lo, hi = {}, nil, nil
  for _, c in ipairs(changes) do
    local rs, da, dh = c[1], c[2], c[3]
    if da ~= 0 or dh ~= 0 then
      for i = 1, #rs, 2 do
        local f, l = math.max(b.low, rs[i]), math.min(b.high, rs[i + 1])
        if f <= l then
          -- breakpoints of the change: + at each range start, - after each range end
          bp[#bp + 1] = { f, da, dh }
          if l < b.high then bp[#bp + 1] = { l + 1, -da, -dh } end
          if lo == nil or f < lo then lo = f end
          if hi == nil or l > hi then hi = l end
        end
      end
    end
  end
  if lo == nil then return end
  if #changes > 1 then table.sort(bp, function(x, y) return x[1] < y[1] end) end
  -- from the segment holding lo - 1 (its counts and its start stay) to the one holding hi + 1
  local om = seg_span(math.max(b.low, lo - 1), math.min(hi + 1, b.high))
  local os, oa, oh = {}, {}, {}
  for j = 1, #om do os[j], oa[j], oh[j] = seg_parse(om[j]) end
  -- merge-walk old starts and breakpoints into the new segments
  local ns, na, nh = {}, {}, {}
  local i, k, ca, ch, da, dh = 1, 1, 0, 0, 0, 0
  while i <= #os or k <= #bp do
    local o = os[i]
    local p = o
    if k <= #bp and (not o or bp[k][1] < o) then p = bp[k][1] end
    if o == p then ca, ch = oa[i], oh[i]; i = i + 1 end
    while k <= #bp and bp[k][1] == p do da = da + bp[k][2]; dh = dh + bp[k][3]; k = k + 1 end
    local va, vh = ca + da, ch + dh
    if #ns == 0 or na[#na] ~= va or nh[#nh] ~= vh then ns[#ns + 1] = p; na[#na + 1] = va; nh[#nh + 1] = vh end
  end
  -- write the difference: changed counts are a new member
  local old = {}
  for j = 1, #os do old[os[j]] = j end
  local zadd, gone = {}, {}
  for j = 1, #ns do
    local p = ns[j]
    local was = old[p]
    if was == nil or oa[was] ~= na[j] or oh[was] ~= nh[j] then
      zadd[#zadd + 1] = p; zadd[#zadd + 1] = seg_member(p, na[j], nh[j])
      if was then gone[#gone + 1] = om[was] end
    end
    old[p] = nil
  end
  for _, j in pairs(old) do gone[#gone + 1] = om[j] end
  if #gone > 0 then call_batched('ZREM', K_AVAIL, gone, 512) end
  if #zadd > 0 then call_batched('ZADD', K_AVAIL, zadd, 512) end
end
local function seg_init()
  redis.call('ZADD', K_AVAIL, 0, '0:0:0')
end
-- The bounds became [low, n] from [low, high] (n > high): the new chunks count 0.
local function seg_grow(low, high)
  local _, a, h = seg_parse(redis.call('ZREVRANGE', K_AVAIL, 0, 0)[1])
  if a ~= 0 or h ~= 0 then
    local from = math.max(low, high + 1)
    redis.call('ZADD', K_AVAIL, from, seg_member(from, 0, 0))
  end
end
-- Low rises to n (up to high + 1 and beyond): forgets the segments below n; the one holding n starts
-- at n. O(log S + segments dropped).
local function seg_drop_below(n, high)
  local a, h = 0, 0
  if n <= high then
    local _
    _, a, h = seg_at(n)
  end
  local gone = redis.call('ZRANGEBYSCORE', K_AVAIL, '-inf', '(' .. int(n))
  if #gone > 0 then call_batched('ZREM', K_AVAIL, gone, 512) end
  redis.call('ZADD', K_AVAIL, n, seg_member(n, a, h))
end
-- Copies in flight count in availability only; holdings (rs: flat, sorted, disjoint) in both.
local function avail_add(f, l, delta) seg_apply({ { { f, l }, delta, 0 } }) end
local function holders_add(rs, delta) seg_apply({ { rs, delta, delta } }) end
-- Whether a viewer that can serve holds a chunk of the segments (members, as seg_span reads them).
local function any_held(members)
  for _, m in ipairs(members) do
    local _, _, h = seg_parse(m)
    if h > 0 then return true end
  end
  return false
end

-- Peer records: h host, p port, r role, m mode, pos, sv served, fl failures,
-- st strikes, bd bad, bn banned (0/1), dl/ul transfer ids it fetches/serves,
-- lv '1' in a live stream (it is in K_FLOOR while it holds something).
local PNUM = { 'p', 'pos', 'sv', 'fl', 'st', 'bd', 'bn' }
local function decode_peer(s)
  if not s then return nil end
  local t = cjson.decode(s)
  for _, k in ipairs(PNUM) do t[k] = tonumber(t[k]) end
  return t
end
local function get_peer(id)
  return decode_peer(redis.call('HGET', K_PEERS, id))
end
local function encode_peer(t)
  local o = {}
  for k, v in pairs(t) do
    if type(v) == 'number' then o[k] = int(v) else o[k] = v end
  end
  return cjson.encode(o)
end
local function put_peer(id, t)
  redis.call('HSET', K_PEERS, id, encode_peer(t))
end
-- The records of peers a and b in one HMGET (nil for an unknown one); b == a gives the one record twice,
-- the same table, so that changes made through either are both written.
local function get_pair(a, b)
  if a == b then
    local p = get_peer(a)
    return p, p
  end
  local r = redis.call('HMGET', K_PEERS, a, b)
  return decode_peer(r[1]), decode_peer(r[2])
end
-- Writes the records given (pa, pb: nil for none) in one HSET.
local function put_pair(a, pa, b, pb)
  local args = {}
  if pa then args[#args + 1] = a; args[#args + 1] = encode_peer(pa) end
  if pb and not (pa and a == b) then args[#args + 1] = b; args[#args + 1] = encode_peer(pb) end
  if #args > 0 then redis.call('HSET', K_PEERS, unpack(args)) end
end
-- The records of peers ids (distinct) in one HMGET, by id (nil for an unknown one).
local function get_records(ids)
  local P = {}
  for k, s in ipairs(redis.call('HMGET', K_PEERS, unpack(ids))) do P[ids[k]] = decode_peer(s) end
  return P
end
-- Writes the records P of peers ids (the known ones) in one HSET, and sets the load in K_SERVERS of those in
-- loaded to their upload count in one ZADD XX (a viewer that serves is there; a seeder or a banned one is not).
local function put_records(ids, P, loaded)
  local w, z = {}, {}
  for _, id in ipairs(ids) do
    local p = P[id]
    if p then
      w[#w + 1] = id; w[#w + 1] = encode_peer(p)
      if loaded[id] then z[#z + 1] = #list_items(p.ul); z[#z + 1] = id end
    end
  end
  if #w > 0 then redis.call('HSET', K_PEERS, unpack(w)) end
  if #z > 0 then redis.call('ZADD', K_SERVERS, 'XX', unpack(z)) end
end
local function counts(p) return p.r ~= 'seeder' and p.p > 0 and p.bn == 0 end
local function avail_holdings(p, id, delta)
  holders_add(parse_ranges(redis.call('HGET', K_HAVE, id)), delta)
end

-- Stores a peer's holdings hv (flat, not empty), grown from old (flat, as stored before), and keeps the
-- indexes that follow them up to date; counted: it counts as a holder (see counts). A peer holding
-- something is in floor (live) and, counted, in servers and reach (join, raiseLow and bans keep that so),
-- so only a first holding, a lower first chunk or a higher last one changes an index.
local function put_holdings(id, p, hv, counted, old)
  redis.call('HSET', K_HAVE, id, format_ranges(hv))
  local first = #old == 0
  if meta().live and (first or hv[1] < old[1]) then redis.call('ZADD', K_FLOOR, 'LT', hv[1], id) end
  if counted then
    if first then redis.call('ZADD', K_SERVERS, 'NX', #list_items(p.ul), id) end
    if first or hv[#hv] > old[#old] then redis.call('ZADD', K_REACH, 'GT', hv[#hv], id) end
  end
end
-- Counts outcome o ('ok', 'failed', else bad data) of a transfer served by peer id (record p, written
-- by the caller) and bans it at the policy's limits. Returns {served failures strikes bad banned}.
local function record_outcome(id, p, o, ban_after_bad, ban_after_strikes)
  if o == 'ok' then p.sv = p.sv + 1; p.st = 0
  elseif o == 'failed' then p.fl = p.fl + 1; p.st = p.st + 1
  else p.bd = p.bd + 1 end
  local ban = p.bd >= ban_after_bad or (p.r ~= 'seeder' and p.st >= ban_after_strikes)
  if ban and p.bn == 0 then
    if counts(p) then avail_holdings(p, id, -1) end
    p.bn = 1
    redis.call('ZREM', K_SERVERS, id)
    redis.call('ZREM', K_REACH, id)
    bump()
  end
  return { p.sv, p.fl, p.st, p.bd, p.bn }
end

-- Removes a transfer; returns its stored record or nil. skip: a peer whose record is going away anyway.
-- Forgets transfer id (record t) in the stream's transfer keys; its peers' records are the caller's.
local function unindex_transfer(id, t)
  redis.call('HDEL', K_XFERS, id)
  redis.call('ZREM', K_XFEREXP, id)
  if t.e == '1' then redis.call('ZREM', K_XFEREND, id) end
end
-- Frees the upload slot transfer id took on its server sid (record p, written by the caller).
local function release_upload(id, sid, p)
  p.ul = list_del(p.ul, id)
  redis.call('ZADD', K_SERVERS, 'XX', 'INCR', -1, sid)
end
local function drop_transfer(id, skip)
  local s = redis.call('HGET', K_XFERS, id)
  if not s then return nil end
  local t = cjson.decode(s)
  unindex_transfer(id, t)
  local f, sv = t.f, t.s
  if f == skip then f = sv end
  if sv == skip then sv = f end
  if f ~= skip then
    local fp, sp = get_pair(f, sv)
    if fp and f == t.f then fp.dl = list_del(fp.dl, id) end
    if sp and sv == t.s then release_upload(id, t.s, sp) end
    put_pair(f, fp, sv, sp)
  end
  if t.c == '1' then avail_add(tonumber(t.a), tonumber(t.b), -1) end
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
  if p.r == 'seeder' then
    redis.call('SREM', K_SEEDERS, id)
  else
    redis.call('ZREM', K_SERVERS, id)
    redis.call('ZREM', K_REACH, id)
  end
  if p.lv == '1' then redis.call('ZREM', K_FLOOR, id) end
  bump()
  return dropped, p
end

-- 1 when the global expiry index may lack an entry as early as score (the zset's earliest was later, or none).
local function needs_index(zkey, score)
  local e = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if e[2] == nil or tonumber(e[2]) > score then return 1 end
  return 0
end

-- The window [first, last] clipped to the bounds, and the members of the availability segments over it:
-- {first, last, members...} ({} when nothing of it is within the bounds or the stream is unknown).
local function read_availability(first, last)
  local m = meta()
  if not m then return {} end
  local f, l = math.max(m.low, tonumber(first)), math.min(m.high, tonumber(last))
  if f > l then return {} end
  local out = seg_span(f, l)
  table.insert(out, 1, int(l))
  table.insert(out, 1, int(f))
  return out
end

-- The sources of window [first, last] (see sources in store.ts): flat {peerId, host, port, role, holdings,
-- uploads, served, failures, strikes, bad} per candidate; start: a random number in [0, 1); segs: the
-- members of the segments over the window when the caller has read them (nil: read here).
local function read_sources(exclude, limit, maxP, maxS, first, last, start, segs)
  local m = meta()
  limit = tonumber(limit)
  if not m then return {} end
  local f, l = math.max(m.low, tonumber(first)), math.min(m.high, tonumber(last))
  if f > l then return {} end
  maxP, maxS = tonumber(maxP), tonumber(maxS)
  local out = {}
  -- Candidates are read in batches: one HMGET of holdings, one of records (and one ZMSCORE of
  -- loads) for all of them, not three commands each. Returns how many were taken (at most want).
  local function consider(ids, check_load, want)
    local list = {}
    for _, id in ipairs(ids) do
      if id ~= exclude then list[#list + 1] = id end
    end
    local found = 0
    for j = 1, #list, 256 do
      local batch = {}
      for i = j, math.min(j + 255, #list) do batch[#batch + 1] = list[i] end
      local loads = check_load and redis.call('ZMSCORE', K_SERVERS, unpack(batch)) or nil
      -- holdings go back as stored: the caller clips them to the window (parsing them here
      -- would cost more than everything else in this script)
      local helds = redis.call('HMGET', K_HAVE, unpack(batch))
      local recs = redis.call('HMGET', K_PEERS, unpack(batch))
      for k, id in ipairs(batch) do
        if found >= want then return found end
        local held, p = helds[k], nil
        local free = not loads or (loads[k] and tonumber(loads[k]) < maxP)
        if free and held and held ~= '' then p = decode_peer(recs[k]) end
        if p and p.bn ~= 1 and p.p ~= 0 then
          local ups = #list_items(p.ul)
          local max = maxP
          if p.r == 'seeder' then max = maxS end
          if ups < max then
            for _, v in ipairs({ id, p.h, p.p, p.r, held, ups, p.sv, p.fl, p.st, p.bd }) do out[#out + 1] = v end
            found = found + 1
          end
        end
      end
    end
    return found
  end
  local seeders = redis.call('SMEMBERS', K_SEEDERS)
  consider(seeders, false, #seeders)
  if limit <= 0 or not any_held(segs or seg_span(f, l)) then return out end
  -- Sample the smaller pool: the viewers with a free slot, ranks [0, free) of K_SERVERS (score =
  -- uploads), or those holding something at or after f, the last "ahead" ranks of K_REACH (score =
  -- highest chunk held), few when a chunk has just left the seeder or at a live edge.
  local free = redis.call('ZCOUNT', K_SERVERS, '-inf', '(' .. maxP)
  local ahead = redis.call('ZCOUNT', K_REACH, f, '+inf')
  local key, base, pool = K_SERVERS, 0, free
  if ahead < free then key, base, pool = K_REACH, redis.call('ZCARD', K_REACH) - ahead, ahead end
  local probes = math.min(pool, 4 * limit)
  if probes == 0 then return out end
  local s0 = math.min(pool - 1, math.floor(tonumber(start) * pool))
  local ids = redis.call('ZRANGE', key, base + s0, base + math.min(pool - 1, s0 + probes - 1))
  if #ids < probes then
    for _, id in ipairs(redis.call('ZRANGE', key, base, base + probes - #ids - 1)) do ids[#ids + 1] = id end
  end
  consider(ids, key == K_REACH, limit)
  return out
end
`;

/** Script bodies by command name; each runs with COMMON in front. */
const BODIES = {
  // ARGV: field value ... (what the stream was created with, its kind's fields and bounds, low 0)
  dsCreateStream: `
if redis.call('EXISTS', K_META) == 0 then
  redis.call('HSET', K_META, 'status', 'accepted', 'readyMs', '0', 'epoch', '0', 'hashed', '0', 'failure', '',
    'segs', '3', unpack(ARGV))
  seg_init()
end
return 1`,

  // ARGV: newLow -> {raised (0/1), dropped transfer records...}
  dsRaiseLow: `
local m, n = meta(), tonumber(ARGV[1])
if not m or not m.live or n <= m.low then return { 0 } end
local out = { 1 }
-- transfers wholly below, as by takeTransfer (their counts go before the segments do)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_XFEREND, '-inf', '(' .. int(n))) do
  local s = drop_transfer(id, nil)
  if s then out[#out + 1] = s end
end
redis.call('HSET', K_META, 'low', int(n))
m.low = n
seg_drop_below(n, m.high)
-- holdings: only the peers holding something below n; what they hold from n on (and its counts,
-- and their highest chunk) stays
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_FLOOR, '-inf', '(' .. int(n))) do
  local hv = ranges_clip(parse_ranges(redis.call('HGET', K_HAVE, id)), n, m.high)
  redis.call('HSET', K_HAVE, id, format_ranges(hv))
  if #hv == 0 then
    redis.call('ZREM', K_FLOOR, id)
    redis.call('ZREM', K_SERVERS, id)
    redis.call('ZREM', K_REACH, id)
  else
    redis.call('ZADD', K_FLOOR, hv[1], id)
  end
end
bump()
return out`,

  // ARGV: high ended (0/1) -> 1 when something changed
  dsRaiseHigh: `
local m, h, e = meta(), tonumber(ARGV[1]), ARGV[2] == '1'
if not m or not m.live or (h <= m.high and (not e or m.ended)) then return 0 end
if h > m.high then
  seg_grow(m.low, m.high)
  redis.call('HSET', K_META, 'high', int(h))
end
if e then redis.call('HSET', K_META, 'ended', '1') end
bump()
return 1`,

  // ARGV: manifest nowMs -> the stream's name, or 0 when unknown
  dsMarkReady: `
if redis.call('EXISTS', K_META) == 0 then return 0 end
redis.call('HSET', K_META, 'status', 'ready', 'readyMs', ARGV[2])
redis.call('SET', K_MANIFEST, ARGV[1])
return redis.call('HGET', K_META, 'name')`,

  // ARGV: index piece hashedChunks -> 1 when stored, 0 when the stream is unknown or failed
  dsPutHashPiece: `
if redis.call('EXISTS', K_META) == 0 or redis.call('HGET', K_META, 'status') == 'failed' then return 0 end
redis.call('HSET', K_PIECES, ARGV[1], ARGV[2])
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', K_META, 'hashed') or '0') then
  redis.call('HSET', K_META, 'hashed', ARGV[3])
end
bump()
return 1`,

  // ARGV: reason -> the stream's name, or nil when unknown
  dsFailStream: `
if redis.call('EXISTS', K_META) == 0 then return false end
redis.call('HSET', K_META, 'status', 'failed', 'failure', ARGV[1])
redis.call('DEL', K_PIECES)
bump()
return redis.call('HGET', K_META, 'name')`,

  // -> the stream's name or nil
  dsRemoveStream: `
local name = redis.call('HGET', K_META, 'name')
redis.call('DEL', unpack(KEYS))
return name`,

  // ARGV: nowMs graceMs -> {0} unknown, {1, since} kept (since: when a sweep first saw it empty at this
  // epoch, or now while it has peers), {2, name} retired (its keys deleted). The meta's "idle" field is
  // "<ms>:<epoch>": any join, leave or publish bumps the epoch, so an empty stream retires only when nothing
  // happened in it for graceMs.
  dsRetireStream: `
local m = redis.call('HMGET', K_META, 'name', 'epoch', 'idle')
if not m[1] then return { 0 } end
if redis.call('HLEN', K_PEERS) > 0 then
  redis.call('HDEL', K_META, 'idle')
  return { 1, ARGV[1] }
end
local epoch = m[2] or '0'
if m[3] then
  local at, ep = string.match(m[3], '^(%d+):(-?%d+)$')
  if at and ep == epoch then
    if tonumber(ARGV[1]) - tonumber(at) >= tonumber(ARGV[2]) then
      redis.call('DEL', unpack(KEYS))
      return { 2, m[1] }
    end
    return { 1, at }
  end
end
redis.call('HSET', K_META, 'idle', ARGV[1] .. ':' .. epoch)
return { 1, ARGV[1] }`,

  dsPeerCounts: `return { redis.call('HLEN', K_PEERS), redis.call('SCARD', K_SEEDERS) }`,

  // ARGV: peerId host port role mode position nowMs have -> {joined, needsIndex, dropped...}
  dsJoinPeer: `
local m = meta()
if not m then return { 0, 0 } end
local id = ARGV[1]
local dropped = remove_peer(id) or {}
local src, hv = parse_ranges(ARGV[8]), {}
for i = 1, #src, 2 do
  local f, l = math.max(src[i], m.low), math.min(src[i + 1], m.high)
  if f <= l then hv[#hv + 1] = f; hv[#hv + 1] = l end
end
local now = tonumber(ARGV[7])
-- a viewer from a host banned for bad data joins banned: it may fetch, never serve
local ban = ARGV[4] == 'viewer' and tonumber(redis.call('HGET', K_HOSTBANS, ARGV[2]) or '0') > now
local p = { h = ARGV[2], p = tonumber(ARGV[3]), r = ARGV[4], m = ARGV[5], pos = tonumber(ARGV[6]),
  sv = 0, fl = 0, st = 0, bd = 0, bn = ban and 1 or 0, dl = '', ul = '' }
if m.live then p.lv = '1' end
put_peer(id, p)
redis.call('HSET', K_HAVE, id, format_ranges(hv))
local idx = needs_index(K_SEEN, now)
redis.call('ZADD', K_SEEN, now, id)
if p.r == 'seeder' then redis.call('SADD', K_SEEDERS, id) end
if m.live and #hv > 0 then redis.call('ZADD', K_FLOOR, hv[1], id) end
if counts(p) then
  holders_add(hv, 1)
  if #hv > 0 then
    redis.call('ZADD', K_SERVERS, 0, id)
    redis.call('ZADD', K_REACH, hv[#hv], id)
  end
end
bump()
local out = { 1, idx }
for _, s in ipairs(dropped) do out[#out + 1] = s end
return out`,

  // ARGV: host untilMs; keeps the later of an existing ban and this one
  dsBanHost: `
if redis.call('EXISTS', K_META) == 0 then return 0 end
local before = tonumber(redis.call('HGET', K_HOSTBANS, ARGV[1]) or '0')
if tonumber(ARGV[2]) > before then redis.call('HSET', K_HOSTBANS, ARGV[1], ARGV[2]) end
return 1`,

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
local m = meta()
local old = parse_ranges(redis.call('HGET', K_HAVE, id))
local hv = old
local before = ranges_total(hv)
local src = parse_ranges(ARGV[2])
local c = counts(p)
local gaps = {}
for i = 1, #src, 2 do
  local f, l = math.max(src[i], m.low), math.min(src[i + 1], m.high)
  if f <= l then
    local g = ranges_gaps(hv, f, l)
    for j = 1, #g, 2 do gaps[#gaps + 1] = { g[j], g[j + 1] } end
    hv = ranges_add(hv, f, l)
  end
end
if c and #gaps > 0 then
  table.sort(gaps, function(x, y) return x[1] < y[1] end)
  local flat = {}
  for _, g in ipairs(gaps) do flat[#flat + 1] = g[1]; flat[#flat + 1] = g[2] end
  holders_add(flat, 1)
end
local added = ranges_total(hv) - before
if added > 0 then
  put_holdings(id, p, hv, c, old)
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
-- one ZMSCORE and one ZADD per 256 peers
local missing = {}
for j = 2, #ARGV, 256 do
  local ids = { unpack(ARGV, j, math.min(j + 255, #ARGV)) }
  local z = {}
  for k, sc in ipairs(redis.call('ZMSCORE', K_SEEN, unpack(ids))) do
    if sc then z[#z + 1] = ARGV[1]; z[#z + 1] = ids[k] else missing[#missing + 1] = ids[k] end
  end
  if #z > 0 then redis.call('ZADD', K_SEEN, 'XX', unpack(z)) end
end
return missing`,

  // ARGV: peerId outcome banAfterBad banAfterStrikes -> {served failures strikes bad banned} or nil
  dsRecordOutcome: `
local id = ARGV[1]
local p = get_peer(id)
if not p then return nil end
local trust = record_outcome(id, p, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
put_peer(id, p)
return trust`,

  // ARGV: first last -> {first, last, members "<start>:<avail>:<held>" of the segments over [first, last]...}
  // (the window clipped to the bounds, as strings; the caller turns members into segments)
  dsAvailability: `return read_availability(ARGV[1], ARGV[2])`,

  // ARGV: exclude limit maxUploadsPeer maxUploadsSeeder first last start (a random number in [0, 1))
  // -> flat {peerId, host, port, role, holdings, uploads, served, failures, strikes, bad} per candidate
  dsSources: `return read_sources(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])`,

  // ARGV: as dsSources -> {n, dsAvailability's reply (n items), dsSources' reply...}; the segments read once
  dsPlanInputs: `
local out = read_availability(ARGV[5], ARGV[6])
local segs = {}
for i = 3, #out do segs[#segs + 1] = out[i] end
table.insert(out, 1, #out)
for _, v in ipairs(read_sources(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], segs)) do
  out[#out + 1] = v
end
return out`,

  // ARGV: fetcherId maxDownloads maxUploadsPeer maxUploadsSeeder, then for each transfer: id server serverRole
  // first last startedMs expiresMs -> {needsIndex, result of each...}: addTransfer of each in order, the records
  // read and written once (see addTransfers in store.ts)
  dsAddTransfers: `
local fid, maxD, maxP, maxS = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = (#ARGV - 4) / 7
local out = { 0 }
local m = meta()
if not m then
  for _ = 1, n do out[#out + 1] = 'unknown-peer' end
  return out
end
local ids, seen = { fid }, { [fid] = true }
for i = 0, n - 1 do
  local sid = ARGV[6 + 7 * i]
  if not seen[sid] then seen[sid] = true; ids[#ids + 1] = sid end
end
local P = get_records(ids)
local fp = P[fid]
local xfers, exp, ends, changes, served, earliest = {}, {}, {}, {}, {}, nil
for i = 0, n - 1 do
  local o = 5 + 7 * i
  local id, sid, a, b, te = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 6])
  local sp = P[sid]
  local r = 'ok'
  if not fp or not sp then r = 'unknown-peer'
  elseif a < m.low or b > m.high then r = 'out-of-bounds'
  elseif sp.bn == 1 then r = 'banned'
  elseif #list_items(fp.dl) >= maxD then r = 'fetcher-busy'
  elseif #list_items(sp.ul) >= (sp.r == 'seeder' and maxS or maxP) then r = 'server-busy'
  end
  if r == 'ok' then
    local c = counts(fp) and '1' or '0'
    -- e: indexed by its last chunk in K_XFEREND (a live stream's, for raiseLow)
    local e
    if m.live then e = '1'; ends[#ends + 1] = b; ends[#ends + 1] = id end
    xfers[#xfers + 1] = id
    xfers[#xfers + 1] = cjson.encode({ id = id, f = fid, s = sid, sr = ARGV[o + 2], a = ARGV[o + 3], b = ARGV[o + 4],
      t0 = ARGV[o + 5], te = ARGV[o + 6], c = c, e = e })
    exp[#exp + 1] = ARGV[o + 6]; exp[#exp + 1] = id
    if earliest == nil or te < earliest then earliest = te end
    fp.dl = list_add(fp.dl, id)
    sp.ul = list_add(sp.ul, id) -- the same table as fp when the peer serves itself
    served[sid] = true
    if c == '1' then changes[#changes + 1] = { { a, b }, 1, 0 } end
  end
  out[#out + 1] = r
end
if #xfers == 0 then return out end
out[1] = needs_index(K_XFEREXP, earliest)
redis.call('HSET', K_XFERS, unpack(xfers))
redis.call('ZADD', K_XFEREXP, unpack(exp))
if #ends > 0 then redis.call('ZADD', K_XFEREND, unpack(ends)) end
put_records(ids, P, served)
seg_apply(changes)
return out`,

  // ARGV: transferId fetcherId ('' for any) -> record or nil
  dsTakeTransfer: `
if ARGV[2] ~= '' then
  local s = redis.call('HGET', K_XFERS, ARGV[1])
  if not s or cjson.decode(s).f ~= ARGV[2] then return nil end
end
return drop_transfer(ARGV[1], nil)`,

  // ARGV: banAfterBad banAfterStrikes, then for each report: fetcherId transferId verified ('*' for the whole
  // range, or ranges, sorted and disjoint) outcome ('' for none) -> for each, in order: false when its fetcher
  // fetches no such transfer, else {record, added, served, failures, strikes, bad, banned} ({record, added}
  // without an outcome). takeTransfer + addHoldings + recordSourceOutcome of each report, in order, in one
  // script: one meta read, each record and each fetcher's holdings read and written once, the availability
  // changes of all the reports in one pass over the segments, and the availability of the chunks delivered
  // left as it is (the copy in flight becomes the fetcher's: -1 +1), so only the held counts change there.
  dsSettleTransfers: `
local ban_bad, ban_strikes = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = (#ARGV - 2) / 4
local fids, xids = {}, {}
for i = 1, n do fids[i] = ARGV[4 * i - 1]; xids[i] = ARGV[4 * i] end
local stored = redis.call('HMGET', K_XFERS, unpack(xids))
-- the transfers their reporters fetch (one named again after it was taken is not there any more), and
-- the peers they involve
local T, ids, seen, taken, any = {}, {}, {}, {}, false
local function involve(id)
  if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
end
for i = 1, n do
  local s = stored[i]
  if s and not taken[xids[i]] then
    local t = cjson.decode(s)
    if t.f == fids[i] then
      taken[xids[i]] = true
      T[i] = { s = s, t = t }
      any = true
      involve(t.f)
      involve(t.s)
    end
  end
end
local out = {}
for i = 1, n do out[i] = false end
if not any then return out end
local m = meta()
local P = get_records(ids)
-- each fetcher's holdings: as stored (OLD) and as they grow here (HV), and how many chunks it gained
local fetchers, OLD, HV, GAINED = {}, {}, {}, {}
for i = 1, n do
  local fid = fids[i]
  if T[i] and P[fid] and not GAINED[fid] then fetchers[#fetchers + 1] = fid; GAINED[fid] = 0 end
end
if #fetchers > 0 then
  for k, h in ipairs(redis.call('HMGET', K_HAVE, unpack(fetchers))) do
    OLD[fetchers[k]] = parse_ranges(h)
    HV[fetchers[k]] = OLD[fetchers[k]]
  end
end
local changes, gone, ends, released = {}, {}, {}, {}
for i = 1, n do
  local e = T[i]
  if e then
    local t, id, fid = e.t, xids[i], fids[i]
    local fp, sp = P[fid], P[t.s]
    gone[#gone + 1] = id
    if t.e == '1' then ends[#ends + 1] = id end
    if sp then sp.ul = list_del(sp.ul, id); released[t.s] = true end
    -- the chunks of the range (within the bounds) the fetcher verified and did not hold
    local a, b = math.max(tonumber(t.a), m.low), math.min(tonumber(t.b), m.high)
    local ga, added = {}, 0
    if fp then fp.dl = list_del(fp.dl, id) end
    if fp and a <= b then
      local hv, src = HV[fid], { a, b }
      local v = ARGV[4 * i + 1]
      if v ~= '*' then src = parse_ranges(v) end
      for j = 1, #src, 2 do
        local f, l = math.max(src[j], a), math.min(src[j + 1], b)
        if f <= l then
          local g = ranges_gaps(hv, f, l)
          for k = 1, #g, 2 do ga = ranges_add(ga, g[k], g[k + 1]) end
          hv = ranges_add(hv, f, l)
        end
      end
      HV[fid] = hv
      added = ranges_total(ga)
      GAINED[fid] = GAINED[fid] + added
    end
    local held = fp and counts(fp)
    if a <= b and t.c == '1' and held then
      -- the copy in flight stays counted where it was delivered, now as a holder's
      changes[#changes + 1] = { ranges_gaps(ga, a, b), -1, 0 }
      changes[#changes + 1] = { ga, 0, 1 }
    elseif a <= b then
      if t.c == '1' then changes[#changes + 1] = { { a, b }, -1, 0 } end
      if held then changes[#changes + 1] = { ga, 1, 1 } end
    end
    local r = { e.s, int(added) }
    local o = ARGV[4 * i + 2]
    if sp and o ~= '' then
      -- a ban takes the source's holdings out of the counts: as they are now, should it have gained some here
      if (GAINED[t.s] or 0) > 0 then redis.call('HSET', K_HAVE, t.s, format_ranges(HV[t.s])) end
      for _, x in ipairs(record_outcome(t.s, sp, o, ban_bad, ban_strikes)) do r[#r + 1] = x end
    end
    out[i] = r
  end
end
redis.call('HDEL', K_XFERS, unpack(gone))
redis.call('ZREM', K_XFEREXP, unpack(gone))
if #ends > 0 then redis.call('ZREM', K_XFEREND, unpack(ends)) end
seg_apply(changes)
for _, fid in ipairs(fetchers) do
  if GAINED[fid] > 0 then put_holdings(fid, P[fid], HV[fid], counts(P[fid]), OLD[fid]) end
end
put_records(ids, P, released)
bump()
return out`,

  // ARGV: fetcherId -> {epoch, hashed, failure, low, high, record, holdings, lastSeen, transfer records...}
  // (record false when unknown)
  dsFetcherView: `
local m = redis.call('HMGET', K_META, 'epoch', 'hashed', 'failure', 'low', 'high', 'chunkCount')
local epoch, hashed, failure = m[1] or '0', m[2] or '0', m[3] or ''
-- bounds as meta() reads them; none for an unknown stream
local low, high = m[4] or '0', m[5] or int(tonumber(m[6] or '0') - 1)
local id = ARGV[1]
local rec = redis.call('HGET', K_PEERS, id)
if not rec then return { epoch, hashed, failure, low, high, false } end
local out = { epoch, hashed, failure, low, high, rec, redis.call('HGET', K_HAVE, id), redis.call('ZSCORE', K_SEEN, id) }
for _, s in ipairs(fetching(cjson.decode(rec))) do out[#out + 1] = s end
return out`,

  // ARGV: fetcherId -> records
  dsTransfersOf: `
local p = get_peer(ARGV[1])
if not p then return {} end
return fetching(p)`,

  // ARGV: nowMs, batch -> {transfers taken, records of those that were still there}: at most batch of the due
  // transfers, the earliest first (the caller repeats while a whole batch was taken)
  dsExpireTransfers: `
local out = {0}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_XFEREXP, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  out[1] = out[1] + 1
  local s = drop_transfer(id, nil)
  if s then out[#out + 1] = s else redis.call('ZREM', K_XFEREXP, id) end
end
return out`,

  // ARGV: cutoffMs, batch -> {peers taken, then flat peerId, role, n, record x n, ...}: at most batch of the peers
  // last seen at or before the cutoff, the earliest first (the caller repeats while a whole batch was taken)
  dsExpirePeers: `
local out = {0}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  out[1] = out[1] + 1
  local dropped, p = remove_peer(id)
  if p then
    out[#out + 1] = id
    out[#out + 1] = p.r
    out[#out + 1] = #dropped
    for _, s in ipairs(dropped) do out[#out + 1] = s end
  else
    redis.call('ZREM', K_SEEN, id)
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
