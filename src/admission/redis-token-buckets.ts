import { LUA_NOW, type LuaScript, type RedisLink } from '../state/redis-link.js';
import type { SharedPart } from '../state/state-events.js';
import { MemoryTokenBuckets, type BucketSpec, type BucketVerdict, type TokenBuckets } from './token-buckets.js';

/**
 * KEYS: the buckets. ARGV: max and period of each, in order. MemoryTokenBuckets.take on the
 * server's clock, atomic over every bucket. Returns {0} when taken, else {index (1-based), retryInMs}.
 */
const TAKE: LuaScript = {
  name: 'mt_buckets_take',
  keys: -1,
  lua: `
${LUA_NOW}
local left = {}
for i = 1, #KEYS do
  local max, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[i], 't', 'a')
  local tokens, at = tonumber(h[1]), tonumber(h[2])
  if not tokens then tokens, at = max, now end
  tokens = math.min(max, tokens + (now - at) * max / period)
  if tokens < 1 then return {i, math.ceil((1 - tokens) * period / max)} end
  left[i] = tokens
end
for i = 1, #KEYS do
  local max, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tokens = left[i] - 1
  redis.call('HSET', KEYS[i], 't', tostring(tokens), 'a', tostring(now))
  -- Gone once it would be full again: a missing bucket is a full one.
  redis.call('PEXPIRE', KEYS[i], math.ceil((max - tokens) * period / max) + 1000)
end
return {0}`,
};

/** KEYS: one bucket. ARGV: max, period. One token back, never beyond max. */
const GIVE: LuaScript = {
  name: 'mt_buckets_give',
  keys: 1,
  lua: `
${LUA_NOW}
local max, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens, at = tonumber(h[1]), tonumber(h[2])
if not tokens then return 0 end
tokens = math.min(max, tokens + (now - at) * max / period + 1)
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((max - tokens) * period / max) + 1000)
return 0`,
};

/**
 * Token buckets the fleet shares in Redis (client rate limits, the connection rate): each decision
 * is one Lua script, atomic over all the buckets a message counts against (the user's and the
 * address's), on the server's clock. A script rather than rate-limiter-flexible: its Redis limiters
 * are fixed-window counters, which would let a client send twice its allowance across a window's
 * edge and refuse it for the rest of the window afterwards, where these limits are documented as
 * token buckets (the whole allowance at once, then an even refill); and one message must be counted
 * against several limits at once or against none.
 *
 * While Redis is unreachable, buckets in this process with 1/`state.expectedInstances` of each
 * allowance (at least one).
 */
export class RedisTokenBuckets implements TokenBuckets {
  #link: RedisLink;
  #part: SharedPart;
  #prefix: string;
  #local: MemoryTokenBuckets;
  #instances: number;

  constructor(link: RedisLink, part: SharedPart, keyPrefix: string, maxTracked: number) {
    this.#link = link;
    this.#part = part;
    this.#prefix = keyPrefix;
    this.#local = new MemoryTokenBuckets(maxTracked);
    this.#instances = link.config.expectedInstances;
  }

  take(buckets: readonly BucketSpec[]): Promise<BucketVerdict> {
    return this.#link.run(
      this.#part,
      async () => {
        const keys = buckets.map((b) => this.#prefix + b.key);
        const args = buckets.flatMap((b) => [b.max, b.periodMs]);
        const [index, retryInMs] = (await this.#link.eval(TAKE, keys, args)) as [number, number?];
        return index === 0 ? { ok: true as const } : { ok: false as const, index: index - 1, retryInMs: retryInMs ?? 0 };
      },
      () => this.#local.takeNow(buckets.map((b) => this.#share(b))),
    );
  }

  give(bucket: BucketSpec): void {
    if (this.#link.mode !== 'shared') return this.#local.give(this.#share(bucket));
    this.#link.send(this.#part, () => this.#link.eval(GIVE, [this.#prefix + bucket.key], [bucket.max, bucket.periodMs]));
  }

  #share(bucket: BucketSpec): BucketSpec {
    return { ...bucket, max: Math.max(1, bucket.max / this.#instances) };
  }
}
