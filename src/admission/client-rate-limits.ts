import { LRUCache } from 'lru-cache';
import { unmapIpv4 } from '../client-address.js';
import type { ClientRateLimit, ClientRateLimitsConfig } from '../config/types.js';

export type LimitName = keyof ClientRateLimit;

/** A limit a client is over: enough for the reply text and the operator. */
export interface LimitExceeded {
  readonly scope: 'user' | 'ip';
  /** The AUTH user or the client address the limit applies to. */
  readonly subject: string;
  readonly limit: LimitName;
  readonly max: number;
  /** When the next message (or recipient) would be allowed. */
  readonly retryInMs: number;
}

export interface LimitClock {
  now(): number;
}

const PERIOD_MS: Readonly<Record<LimitName, number>> = {
  messagesPerMinute: 60_000,
  messagesPerHour: 3_600_000,
  recipientsPerHour: 3_600_000,
};

const MESSAGE_LIMITS: readonly LimitName[] = ['messagesPerMinute', 'messagesPerHour'];
const RECIPIENT_LIMITS: readonly LimitName[] = ['recipientsPerHour'];

/** Tokens left per limit and when they were last topped up. */
interface Bucket {
  tokens: number;
  at: number;
}

type Buckets = Partial<Record<LimitName, Bucket>>;

/**
 * Ingress limits per AUTH user and per client address (messages per minute and per hour, recipients
 * per hour). Each limit is a token bucket holding `max` tokens that refills at `max` per period, so a
 * client may send its whole allowance at once and then at the average rate.
 *
 * The buckets live in a bounded LRU (`maxTracked` users and addresses; PITFALLS §5: always a `max`),
 * so a flood of new addresses costs bounded memory; an address pushed out starts again with a full
 * allowance, which errs toward letting mail through. No TTL: a bucket left alone refills by itself.
 */
export class ClientRateLimits {
  #config: ClientRateLimitsConfig;
  #clock: LimitClock;
  #buckets: LRUCache<string, Buckets> | null;

  constructor(config: ClientRateLimitsConfig, clock: LimitClock = performance) {
    this.#config = config;
    this.#clock = clock;
    const any = [config.perUser, config.perIp].some((l) => Object.values(l).some((v) => v !== null));
    this.#buckets = any ? new LRUCache<string, Buckets>({ max: config.maxTracked }) : null;
  }

  /** Users and addresses currently tracked. */
  get tracked(): number {
    return this.#buckets?.size ?? 0;
  }

  /** At MAIL FROM: counts one message, or says which limit is reached (nothing is counted then). */
  admitMessage(user: string | null, ip: string): LimitExceeded | null {
    return this.#admit(user, ip, MESSAGE_LIMITS);
  }

  /** At each RCPT TO: counts one recipient, or says which limit is reached. */
  admitRecipient(user: string | null, ip: string): LimitExceeded | null {
    return this.#admit(user, ip, RECIPIENT_LIMITS);
  }

  #admit(user: string | null, ip: string, names: readonly LimitName[]): LimitExceeded | null {
    if (this.#buckets === null) return null;
    const now = this.#clock.now();
    const address = unmapIpv4(ip);
    const subjects: { scope: 'user' | 'ip'; subject: string; limits: ClientRateLimit }[] = [{ scope: 'ip', subject: address, limits: this.#config.perIp }];
    if (user !== null) subjects.unshift({ scope: 'user', subject: user, limits: this.#config.perUser });
    const toTake: Bucket[] = [];
    for (const { scope, subject, limits } of subjects) {
      for (const name of names) {
        const max = limits[name];
        if (max === null) continue;
        const bucket = this.#bucket(`${scope}:${subject}`, name, max, now);
        if (bucket.tokens < 1) {
          const retryInMs = Math.ceil(((1 - bucket.tokens) * PERIOD_MS[name]) / max);
          return { scope, subject, limit: name, max, retryInMs };
        }
        toTake.push(bucket);
      }
    }
    // Only once every limit allows it: a refused message must not use up another limit's allowance.
    for (const bucket of toTake) bucket.tokens -= 1;
    return null;
  }

  /** The bucket, topped up for the time since it was last used. */
  #bucket(key: string, name: LimitName, max: number, now: number): Bucket {
    let buckets = this.#buckets!.get(key);
    if (buckets === undefined) {
      buckets = {};
      this.#buckets!.set(key, buckets);
    }
    let bucket = buckets[name];
    if (bucket === undefined) {
      bucket = { tokens: max, at: now };
      buckets[name] = bucket;
    }
    bucket.tokens = Math.min(max, bucket.tokens + ((now - bucket.at) * max) / PERIOD_MS[name]);
    bucket.at = now;
    return bucket;
  }
}

/** "at most 100 messages per hour for user billing; try again in 36 s": for the client's reply. */
export function describeLimit(e: LimitExceeded): string {
  const what: Record<LimitName, string> = {
    messagesPerMinute: 'messages per minute',
    messagesPerHour: 'messages per hour',
    recipientsPerHour: 'recipients per hour',
  };
  const who = e.scope === 'user' ? `user ${e.subject}` : `address ${e.subject}`;
  return `at most ${e.max} ${what[e.limit]} for ${who}; try again in ${Math.max(1, Math.ceil(e.retryInMs / 1000))} s`;
}
