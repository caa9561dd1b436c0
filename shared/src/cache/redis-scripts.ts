/**
 * The Lua scripts of the Redis store, and the helpers that build their arguments and
 * read their answers. Each script is one atomic step on Redis (set-if-newer, GCRA,
 * admits, refunds, counters, stream appends); `defineScripts` installs them on a
 * client as commands. Kept apart from `redis-store.ts` so the argument layouts
 * documented above each script sit next to the code that builds them.
 */
import type { Redis } from "ioredis";
import type { AdmitCall, Admission, RateCheck } from "./store.ts";

const SET_IF_NEWER = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' and tonumber(obj.v) then
    local have = tonumber(obj.v)
    local want = tonumber(ARGV[2])
    if have > want then return 0 end
    if have == want and ARGV[4] == 'fill' then
      -- The same record: a fill only renews its freshness (stale-if-error keeps
      -- it past that), never anything else.
      local curFresh = tonumber(string.match(cur, ',"freshUntil":(%d+)}$'))
      local newFresh = tonumber(string.match(ARGV[1], ',"freshUntil":(%d+)}$'))
      if not (curFresh and newFresh and newFresh > curFresh) then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`;

// GCRA (generic cell rate algorithm) on Redis' own clock so routers' clocks do not
// matter: one round trip, atomic. Stores the theoretical arrival time (µs).
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, math.ceil((allow_at - now) / 1000), 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, math.floor((now - allow_at) / interval)}`;

const INCR = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n`;

// Several GCRA buckets and a monthly quota in one atomic step, for up to `want`
// requests at once (see Store.admit). K: the n bucket keys, then the quota key if any,
// then the quota's legacy key if any (QuotaCheck.legacyKey).
// A: n, want, then interval (µs) and burst per bucket, then the quota's limit and TTL
// (ms). A bucket's room is the number of intervals that fit before its allow-at time
// passes now. Times are kept as integers (string.format %d): Lua's default number
// format would round them.
const ADMIT_FUNCTION = `
local function admit(now, K, A, has_quota)
  local n = tonumber(A[1])
  local grant = tonumber(A[2])
  -- A negative count is a forced charge: consumed whatever the room, answered as it fits.
  local force = grant < 0
  if force then grant = -grant end
  local retry = 0
  local least = -1
  local tightest = 0
  local slowest = 0
  local tats = {}
  for i = 1, n do
    local interval = tonumber(A[2 * i + 1])
    local burst = tonumber(A[2 * i + 2])
    local tat = tonumber(redis.call('GET', K[i])) or now
    if tat < now then tat = now end
    tats[i] = tat
    local room = math.floor((now - tat) / interval) + burst
    if room < 1 then
      local wait = tat + interval - burst * interval - now
      if wait > retry then
        retry = wait
        slowest = i - 1
      end
    elseif least < 0 or room < least then
      least = room
      tightest = i - 1
    end
  end
  if retry > 0 and not force then return {1, math.ceil(retry / 1000), 0, 0, slowest, 0} end
  if least >= 0 and least < grant and not force then grant = least end
  local over_quota = false
  local used = 0
  if has_quota then
    local limit = tonumber(A[2 * n + 3])
    used = tonumber(redis.call('GET', K[n + 1]))
    if not used then
      used = 0
      -- A counter under its name of an earlier release is carried over once.
      if K[n + 2] then
        local old = tonumber(redis.call('GET', K[n + 2]))
        if old then
          used = old
          redis.call('SET', K[n + 1], string.format('%d', old), 'PX', A[2 * n + 4])
          redis.call('DEL', K[n + 2])
        end
      end
    end
    if used >= limit then
      if not force then return {2, 0, used, 0, 0, 0} end
      over_quota = true
    end
    if limit - used < grant and not force then grant = limit - used end
    used = redis.call('INCRBY', K[n + 1], grant)
    if used == grant then redis.call('PEXPIRE', K[n + 1], A[2 * n + 4]) end
  end
  local reset = 0
  for i = 1, n do
    local new_tat = tats[i] + grant * tonumber(A[2 * i + 1])
    if i - 1 == tightest then reset = new_tat - now end
    redis.call('SET', K[i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  end
  -- Forced past a bucket: its wait grows by what was just consumed from it.
  if retry > 0 then return {1, math.ceil((retry + grant * tonumber(A[2 * slowest + 3])) / 1000), 0, 0, slowest, 0} end
  if over_quota then return {2, 0, used, 0, 0, 0} end
  local remaining = 0
  if least > grant then remaining = least - grant end
  return {0, remaining, math.ceil(reset / 1000), used, tightest, grant}
end
`;

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
`;

// KEYS and ARGV as K and A above.
const ADMIT = `${NOW}${ADMIT_FUNCTION}
return admit(now, KEYS, ARGV, #KEYS > tonumber(ARGV[1]))`;

// Several admits in one call, each decided as by ADMIT, in order, on one clock (see
// Store.admitMany). ARGV: the number of admits, then for each: n, want, the number of
// quota keys (0, 1, or 2 with a legacy key), then its A after n and want; KEYS: each
// admit's K, in order.
// Answers: six numbers per admit, as ADMIT's.
const ADMIT_MANY = `${NOW}${ADMIT_FUNCTION}
local out = {}
local ki = 0
local ai = 2
for s = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[ai])
  local has_quota = ARGV[ai + 2] ~= '0'
  local A = {ARGV[ai], ARGV[ai + 1]}
  for j = 1, 2 * n do A[2 + j] = ARGV[ai + 2 + j] end
  local nk = n
  if has_quota then
    A[2 * n + 3] = ARGV[ai + 2 * n + 3]
    A[2 * n + 4] = ARGV[ai + 2 * n + 4]
    nk = n + tonumber(ARGV[ai + 2])
    ai = ai + 2
  end
  ai = ai + 3 + 2 * n
  local K = {}
  for j = 1, nk do K[j] = KEYS[ki + j] end
  ki = ki + nk
  local r = admit(now, K, A, has_quota)
  for j = 1, 6 do out[#out + 1] = r[j] end
end
return out`;

// Gives back unused requests (see Store.refund). KEYS and ARGV[1] as for ADMIT;
// ARGV[2] the count; then the interval (µs) per bucket. A bucket moved back to now
// or earlier is full: its key is deleted. The quota never goes below 0 and keeps its
// TTL; a key that expired (or a month that ended) is not recreated.
const REFUND = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local give = tonumber(ARGV[2])
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    local back = tat - give * tonumber(ARGV[2 + i])
    if back <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%d', back), 'PX', math.ceil((back - now) / 1000) + 1)
    end
  end
end
if #KEYS > n and redis.call('EXISTS', KEYS[n + 1]) == 1 then
  local left = redis.call('DECRBY', KEYS[n + 1], give)
  if left < 0 then redis.call('INCRBY', KEYS[n + 1], -left) end
end
return 1`;

// HINCRBY field by, for each pair of ARGV, in one atomic step.
const ADD_COUNTERS = `
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`;

const TAKE = `
local v = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return v`;

// Claim a counter batch: a batch left at KEYS[2] is answered as it is; else the
// counters at KEYS[1] move there (RENAME: no increment can land in between) and are
// named ARGV[1]. The name is the hash's field "#batch".
const CLAIM = `
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], '#batch', ARGV[1])
end
return redis.call('HGETALL', KEYS[2])`;

// Drop a claimed batch only if it is still the one named (a newer claim stays).
const RELEASE = `
if redis.call('HGET', KEYS[1], '#batch') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

// Append a batch to a stream only as far as the bound allows: the backlog stays
// bounded without trimming entries no consumer has stored yet (the caller counts
// the refused rest). MAXLEN never trims here; it is a guard against misuse.
const STREAM_APPEND = `
local max = tonumber(ARGV[1])
local n = #ARGV - 1
local room = max - redis.call('XLEN', KEYS[1])
if room < n then n = room end
if n < 0 then n = 0 end
for i = 2, n + 1 do redis.call('XADD', KEYS[1], 'MAXLEN', max, '*', 'e', ARGV[i]) end
return n`;

/** One admit's answer: six numbers from `at` in a script's reply. */
export function admission(reply: number[], at: number): Admission {
  const code = reply[at] as number;
  const a = reply[at + 1] as number;
  const b = reply[at + 2] as number;
  const bucket = reply[at + 4] as number;
  if (code === 1) return { ok: false, code: "rate", retryAfterMs: a, bucket };
  if (code === 2) return { ok: false, code: "quota", used: b };
  return { ok: true, remaining: a, resetMs: b, used: reply[at + 3] as number, bucket, granted: reply[at + 5] as number };
}

/** A bucket's emission interval as the scripts keep it: whole microseconds, at least 1. */
export function intervalUs(r: RateCheck): number {
  return Math.max(1, Math.round(r.emissionIntervalMs * 1000));
}

/** A client with the scripts defined (`defineScripts`), as the store calls them. */
export type Scripted = Redis & {
  admit(...args: (string | number)[]): Promise<number[]>;
  admitMany(...args: (string | number)[]): Promise<number[]>;
  refund(...args: (string | number)[]): Promise<number>;
  takeHash(key: string): Promise<string[]>;
  claimCounters(key: string, claimKey: string, batch: string): Promise<string[]>;
  releaseCounters(claimKey: string, batch: string): Promise<number>;
  addCounters(key: string, ...fieldsAndIncrements: (string | number)[]): Promise<number>;
  streamAppend(key: string, maxLen: number, ...payloads: string[]): Promise<number>;
  setIfNewer(key: string, value: string, version: number, ttl: number, mode: string): Promise<number>;
  gcra(key: string, intervalUs: number, burst: number): Promise<[number, number, number]>;
  incrTtl(key: string, by: number, ttl: number): Promise<number>;
};

/** Installs the scripts on a client as commands of its own (ioredis `defineCommand`). */
export function defineScripts(client: Redis): Scripted {
  client.defineCommand("setIfNewer", { numberOfKeys: 1, lua: SET_IF_NEWER });
  client.defineCommand("gcra", { numberOfKeys: 1, lua: GCRA });
  client.defineCommand("incrTtl", { numberOfKeys: 1, lua: INCR });
  client.defineCommand("admit", { lua: ADMIT });
  client.defineCommand("admitMany", { lua: ADMIT_MANY });
  client.defineCommand("refund", { lua: REFUND });
  client.defineCommand("takeHash", { numberOfKeys: 1, lua: TAKE });
  client.defineCommand("claimCounters", { numberOfKeys: 2, lua: CLAIM });
  client.defineCommand("releaseCounters", { numberOfKeys: 1, lua: RELEASE });
  client.defineCommand("addCounters", { numberOfKeys: 1, lua: ADD_COUNTERS });
  client.defineCommand("streamAppend", { numberOfKeys: 1, lua: STREAM_APPEND });
  return client as Scripted;
}

/**
 * Appends one admit's keys (prefixed) and arguments as ADMIT reads them, or, with
 * `flagQuota`, as one admit of ADMIT_MANY (with its number of quota keys). The
 * legacy quota key is only passed on one Redis (`sharded` false).
 */
export function admitArgs(
  keys: string[],
  args: (string | number)[],
  call: AdmitCall,
  flagQuota: boolean,
  prefix: string,
  sharded: boolean,
): void {
  const { rates, quota } = call;
  const legacy = quota?.legacyKey !== undefined && !sharded;
  const want = Math.max(1, Math.floor(call.want ?? 1));
  args.push(rates.length, call.force === true ? -want : want);
  if (flagQuota) args.push(quota === null ? 0 : legacy ? 2 : 1);
  for (const r of rates) {
    keys.push(prefix + r.key);
    args.push(intervalUs(r), r.burst);
  }
  if (quota !== null) {
    keys.push(prefix + quota.key);
    if (legacy) keys.push(prefix + (quota.legacyKey as string));
    args.push(quota.limit, Math.max(1, Math.ceil(quota.ttlMs)));
  }
}
