import type { UpstreamRateLimitConfig } from '../config/types.js';
import { LUA_NOW, type LuaScript, type RedisLink } from '../state/redis-link.js';
import type { StopSignal } from '../upstream/deadline.js';
import { AdaptiveThrottle } from './adaptive-throttle.js';
import { waitForSlot, type RateTicket, type Reservation, type SendingRate, type Slowdown } from './pacing.js';
import { EgressRateLimiter } from './rate-limiter.js';

/**
 * The fleet's pacing towards one upstream through Redis: one GCRA "theoretical arrival time" per
 * upstream entry and one adaptive slow-down, both updated by Lua scripts, so every decision is one
 * atomic round trip on the server's clock (TIME), whatever the instances' clocks say. The scripts
 * are the local EgressRateLimiter's and AdaptiveThrottle's rules, unchanged (KumoMTA keeps its
 * throttles in Redis the same way). rate-limiter-flexible does not fit here: its Redis limiters count
 * fixed windows and refuse, where a message must be given a start slot in the future to wait for.
 *
 * The slow-down's decay timer becomes lazy: the delay halves once per `decay` since the last
 * throttling reply, applied whenever a script reads it.
 */
const THROTTLE_LIB = `
${LUA_NOW}
local function halve(d, initial)
  local half = math.floor(d / 2 + 0.5)
  if half < initial then return 0 end
  return half
end
-- The slow-down (delay d, raised at r, changed at c, decay counted from f) as of now.
local function current(key, now, initial, decay)
  local h = redis.call('HMGET', key, 'd', 'r', 'c', 'f')
  local d, r, c, f = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0
  local steps = 0
  if d > 0 then steps = math.floor((now - f) / decay) end
  local decayed = steps > 0
  while steps > 0 and d > 0 do
    d = halve(d, initial)
    f = f + decay
    steps = steps - 1
  end
  return d, r, c, f, decayed
end
local function store(key, d, r, c, f, decay)
  if d == 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'd', d, 'r', r, 'c', c, 'f', f)
    redis.call('PEXPIRE', key, math.ceil(decay * 40 + 60000))
  end
end
`;

/** KEYS: throttle. ARGV: initial, max, decay. Returns the delay in force after this throttling reply. */
const THROTTLED: LuaScript = {
  name: 'mt_throttled',
  keys: 1,
  lua: `${THROTTLE_LIB}
local initial, max, decay = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local d, r, c, f, decayed = current(KEYS[1], now, initial, decay)
if initial == 0 or (d > 0 and now - r < d) then
  if decayed then store(KEYS[1], d, r, c, f, decay) end
  return d
end
if d == 0 then d = math.min(initial, max) else d = math.min(max, d * 2) end
store(KEYS[1], d, now, now, now, decay)
return d`,
};

/** KEYS: throttle. ARGV: initial, decay. Eases one step (at most once per delay period); returns the delay. */
const SUCCEEDED: LuaScript = {
  name: 'mt_throttle_eased',
  keys: 1,
  lua: `${THROTTLE_LIB}
local initial, decay = tonumber(ARGV[1]), tonumber(ARGV[2])
local d, r, c, f, decayed = current(KEYS[1], now, initial, decay)
if d > 0 and now - c >= d then
  d = halve(d, initial)
  c = now
  decayed = true
end
if decayed then store(KEYS[1], d, r, c, f, decay) end
return d`,
};

/**
 * KEYS: tat, throttle. ARGV: base interval, burst tolerance, limit (-1 = none), may wait (0/1),
 * initial, decay, not before (ms from now: the slots this instance gave on its own while Redis was
 * unreachable come first). GCRA as in EgressRateLimiter.reserve. Returns {status, next, wait, delay,
 * before}: status 1 reserved, -1 over the limit, -2 would wait while too many wait already.
 */
const RESERVE: LuaScript = {
  name: 'mt_reserve',
  keys: 2,
  lua: `${THROTTLE_LIB}
local base, tolerance, limit, mayWait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local initial, decay, notBefore = tonumber(ARGV[5]), tonumber(ARGV[6]), now + tonumber(ARGV[7])
local d, r, c, f, decayed = current(KEYS[2], now, initial, decay)
if decayed then store(KEYS[2], d, r, c, f, decay) end
local interval = math.max(base, d)
if interval == 0 then return {'1', '', '0', tostring(d), ''} end
if interval ~= base then tolerance = 0 end
local stored = redis.call('GET', KEYS[1])
local tat = tonumber(stored) or now
local start = math.max(notBefore, tat - tolerance)
local wait = start - now
if limit >= 0 and wait > limit then return {'-1', '', tostring(wait), tostring(d), ''} end
if wait > 0 and not mayWait then return {'-2', '', tostring(wait), tostring(d), ''} end
local nxt = string.format('%.3f', math.max(tat, start) + interval)
redis.call('SET', KEYS[1], nxt, 'PX', math.ceil(tonumber(nxt) - now) + 1000)
return {'1', nxt, tostring(wait), tostring(d), stored or ''}`,
};

/** KEYS: tat. ARGV: the slot reserved, the value before it. Gives the slot back if nobody reserved after it. */
const CANCEL: LuaScript = {
  name: 'mt_reserve_cancel',
  keys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
end
return 0`,
};

/** KEYS: throttle. ARGV: initial, decay. The delay in force, decay applied. */
const PEEK: LuaScript = {
  name: 'mt_throttle_peek',
  keys: 1,
  lua: `${THROTTLE_LIB}
local initial, decay = tonumber(ARGV[1]), tonumber(ARGV[2])
local d, r, c, f, decayed = current(KEYS[1], now, initial, decay)
if decayed then store(KEYS[1], d, r, c, f, decay) end
return d`,
};

const keyOf = (upstream: string, what: string): string => `upstream:${upstream}:${what}`;

/**
 * The fleet's adaptive slow-down towards one upstream. Every instance reports its throttling replies
 * and successes to the same state in Redis; a change is published so each instance knows the delay
 * in force without asking (a success costs a Redis call only while a delay is in force). A local
 * AdaptiveThrottle hears every reply too and takes over while Redis is unreachable.
 */
export class RedisSlowdown implements Slowdown {
  readonly upstream: string;
  #link: RedisLink;
  #backoff: UpstreamRateLimitConfig['backoff'];
  #local: AdaptiveThrottle;
  #onChange: (delayMs: number) => void;
  #shared = 0;
  #reported = 0;
  #refresh: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(link: RedisLink, upstream: string, backoff: UpstreamRateLimitConfig['backoff'], onChange: (delayMs: number) => void) {
    this.upstream = upstream;
    this.#link = link;
    this.#backoff = backoff;
    this.#onChange = onChange;
    this.#local = new AdaptiveThrottle(upstream, backoff, () => this.#report());
    link.subscribe(keyOf(upstream, 'throttle'), (message) => this.observe(Number(message), false));
    link.onShared(() => this.#peek());
  }

  get delayMs(): number {
    return this.#link.mode === 'shared' ? this.#shared : this.#local.delayMs;
  }

  throttled(): void {
    this.#local.throttled();
    const { initial, max, decay } = this.#backoff;
    if (initial > 0) this.#update(THROTTLED, [initial, max, decay], true);
  }

  succeeded(): void {
    this.#local.succeeded();
    if (this.#shared > 0) this.#update(SUCCEEDED, [this.#backoff.initial, this.#backoff.decay], true);
  }

  /** The fleet's delay as a script or another instance reported it; `announce` publishes a change to the others. */
  observe(delayMs: number, announce: boolean): void {
    if (!Number.isFinite(delayMs) || this.#closed) return;
    if (delayMs !== this.#shared) {
      this.#shared = delayMs;
      if (announce) this.#link.publish('throttle', keyOf(this.upstream, 'throttle'), String(delayMs));
    }
    this.#scheduleRefresh();
    this.#report();
  }

  close(): void {
    this.#closed = true;
    this.#local.close();
    if (this.#refresh !== null) clearTimeout(this.#refresh);
    this.#refresh = null;
  }

  /** While a delay is in force, read it again after each decay period: it fades even without traffic. */
  #scheduleRefresh(): void {
    if (this.#refresh !== null || this.#shared === 0 || this.#closed) return;
    this.#refresh = setTimeout(() => {
      this.#refresh = null;
      this.#peek();
    }, this.#backoff.decay);
    this.#refresh.unref();
  }

  #peek(): void {
    this.#update(PEEK, [this.#backoff.initial, this.#backoff.decay], false);
  }

  /** Runs one of the slow-down's scripts and takes on the delay it returns (nothing while degraded). */
  #update(script: LuaScript, args: readonly number[], announce: boolean): void {
    void this.#link
      .run(
        'throttle',
        () => this.#link.eval(script, [keyOf(this.upstream, 'throttle')], args),
        () => null,
      )
      .then((d) => d !== null && this.observe(Number(d), announce));
  }

  #report(): void {
    const now = this.delayMs;
    if (now === this.#reported) return;
    this.#reported = now;
    this.#onChange(now);
  }

  /** This instance's own slow-down, for the local share while Redis is unreachable. */
  get local(): AdaptiveThrottle {
    return this.#local;
  }
}

/**
 * The fleet's sending rate towards one upstream: GCRA in Redis, so three instances together start at
 * most `messagesPerSecond` (after `burst`), each message still waiting for its own slot on its own
 * instance. Without a fixed rate and while no slow-down is in force it asks Redis nothing. While
 * Redis is unreachable, an EgressRateLimiter at 1/`state.expectedInstances` of the rate and burst.
 */
export class RedisSendingRate implements SendingRate {
  readonly upstream: string;
  #link: RedisLink;
  #slowdown: RedisSlowdown;
  #baseInterval: number;
  #tolerance: number;
  #maxWait: number | null;
  #maxWaiters: number;
  #backoff: UpstreamRateLimitConfig['backoff'];
  #fallback: EgressRateLimiter;
  #count = { waiting: 0 };

  constructor(link: RedisLink, upstream: string, config: UpstreamRateLimitConfig, maxWaiters: number, slowdown: RedisSlowdown) {
    this.upstream = upstream;
    this.#link = link;
    this.#slowdown = slowdown;
    this.#baseInterval = config.messagesPerSecond === null ? 0 : 1000 / config.messagesPerSecond;
    this.#tolerance = (config.burst - 1) * this.#baseInterval;
    this.#maxWait = config.maxWait;
    this.#maxWaiters = maxWaiters;
    this.#backoff = config.backoff;
    const n = link.config.expectedInstances;
    const share = {
      messagesPerSecond: config.messagesPerSecond === null ? null : config.messagesPerSecond / n,
      burst: Math.max(1, Math.floor(config.burst / n)),
      maxWait: config.maxWait,
    };
    // The waiting bound is checked here, for shared and local slots alike.
    this.#fallback = new EgressRateLimiter(upstream, share, Number.POSITIVE_INFINITY, slowdown.local);
  }

  get waiting(): number {
    return this.#count.waiting;
  }

  async take(limitMs: number, signal: StopSignal): Promise<RateTicket> {
    if (this.#baseInterval === 0 && this.#slowdown.delayMs === 0) return { ok: true, waitedMs: 0 };
    const reservation = await this.#link.run(
      'egress_rate',
      () => this.#reserveShared(limitMs),
      () => this.#reserveLocal(limitMs),
    );
    return waitForSlot(reservation, signal, this.#count);
  }

  #reserveLocal(limitMs: number): Reservation {
    const r = this.#fallback.reserve(limitMs);
    if (r.ok && r.waitMs > 0 && this.#count.waiting >= this.#maxWaiters) {
      r.cancel();
      return { ok: false, waitedMs: 0, refusal: 'too-many-waiting', wouldWaitMs: Math.round(r.waitMs) };
    }
    return r;
  }

  async #reserveShared(limitMs: number): Promise<Reservation> {
    const limit = Math.min(limitMs, this.#maxWait ?? Number.POSITIVE_INFINITY);
    const { initial, decay } = this.#backoff;
    const keys = [keyOf(this.upstream, 'tat'), keyOf(this.upstream, 'throttle')];
    // Back from local pacing: the slots given locally keep their places, the fleet's come after them.
    const asked = performance.now();
    const notBefore = Math.max(0, this.#fallback.lastStart + this.#baseInterval - asked);
    const args = [
      this.#baseInterval,
      this.#tolerance,
      Number.isFinite(limit) ? limit : -1,
      this.#count.waiting < this.#maxWaiters ? 1 : 0,
      initial,
      decay,
      notBefore,
    ];
    const [status, next, wait, delay, before] = (await this.#link.eval(RESERVE, keys, args)) as [string, string, string, string, string];
    this.#slowdown.observe(Number(delay), false);
    const waitMs = Number(wait);
    // Should Redis go away now, local pacing goes on after this slot, not beside it.
    if (status === '1') this.#fallback.continueAfter(asked + waitMs);
    if (status === '-1') return { ok: false, waitedMs: 0, refusal: 'over-deadline', wouldWaitMs: Math.round(waitMs) };
    if (status === '-2') return { ok: false, waitedMs: 0, refusal: 'too-many-waiting', wouldWaitMs: Math.round(waitMs) };
    return {
      ok: true,
      waitMs,
      cancel: () => {
        if (next !== '') this.#link.send('egress_rate', () => this.#link.eval(CANCEL, [keys[0]!], [next, before]));
      },
    };
  }
}
