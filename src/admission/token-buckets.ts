import { LRUCache } from 'lru-cache';

/** One token bucket: `max` tokens, refilled evenly at `max` per `periodMs`. */
export interface BucketSpec {
  readonly key: string;
  readonly max: number;
  readonly periodMs: number;
}

/** Taken: one token from each bucket. Refused: none taken; `index` is the first bucket without a token. */
export type BucketVerdict = { readonly ok: true } | { readonly ok: false; readonly index: number; readonly retryInMs: number };

/**
 * Where the ingress limits keep their buckets (client rate limits, the connection rate): in this
 * process (MemoryTokenBuckets), or shared by the fleet in Redis (redis-token-buckets.ts).
 */
export interface TokenBuckets {
  /** Takes one token from every bucket, or from none when one of them has none left. */
  take(buckets: readonly BucketSpec[]): Promise<BucketVerdict>;
  /** Gives one token back to the bucket (never beyond its `max`). */
  give(bucket: BucketSpec): void;
}

export interface BucketClock {
  now(): number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The buckets of one instance, in a bounded LRU (`maxTracked`, PITFALLS §5: always a `max`): a flood
 * of new addresses costs bounded memory; a bucket pushed out starts again full, which errs toward
 * letting mail through. No TTL: a bucket left alone refills by itself.
 */
export class MemoryTokenBuckets implements TokenBuckets {
  #buckets: LRUCache<string, Bucket>;
  #clock: BucketClock;

  constructor(maxTracked: number, clock: BucketClock = performance) {
    this.#buckets = new LRUCache<string, Bucket>({ max: maxTracked });
    this.#clock = clock;
  }

  /** Buckets currently tracked. */
  get tracked(): number {
    return this.#buckets.size;
  }

  async take(buckets: readonly BucketSpec[]): Promise<BucketVerdict> {
    return this.takeNow(buckets);
  }

  /** `take` without the promise, for callers in this process. */
  takeNow(buckets: readonly BucketSpec[]): BucketVerdict {
    const now = this.#clock.now();
    const found = buckets.map((spec) => this.#bucket(spec, now));
    for (const [index, bucket] of found.entries()) {
      if (bucket.tokens < 1) {
        const spec = buckets[index]!;
        return { ok: false, index, retryInMs: Math.ceil(((1 - bucket.tokens) * spec.periodMs) / spec.max) };
      }
    }
    // Only once every bucket allows it: a refused message must not use up another limit's allowance.
    for (const bucket of found) bucket.tokens -= 1;
    return { ok: true };
  }

  give(spec: BucketSpec): void {
    const bucket = this.#buckets.get(spec.key);
    if (bucket) bucket.tokens = Math.min(spec.max, bucket.tokens + 1);
  }

  /** The bucket, topped up for the time since it was last used. */
  #bucket(spec: BucketSpec, now: number): Bucket {
    let bucket = this.#buckets.get(spec.key);
    if (bucket === undefined) {
      bucket = { tokens: spec.max, at: now };
      this.#buckets.set(spec.key, bucket);
    }
    bucket.tokens = Math.min(spec.max, bucket.tokens + ((now - bucket.at) * spec.max) / spec.periodMs);
    bucket.at = now;
    return bucket;
  }
}
