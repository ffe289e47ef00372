import { unmapIpv4 } from '../client-address.js';
import type { ClientRateLimit, ClientRateLimitsConfig } from '../config/types.js';
import { MemoryTokenBuckets, type BucketSpec, type TokenBuckets } from './token-buckets.js';

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

const PERIOD_MS: Readonly<Record<LimitName, number>> = {
  messagesPerMinute: 60_000,
  messagesPerHour: 3_600_000,
  recipientsPerHour: 3_600_000,
};

const MESSAGE_LIMITS: readonly LimitName[] = ['messagesPerMinute', 'messagesPerHour'];
const RECIPIENT_LIMITS: readonly LimitName[] = ['recipientsPerHour'];

/**
 * Ingress limits per AUTH user and per client address (messages per minute and per hour, recipients
 * per hour). Each limit is a token bucket holding `max` tokens that refills at `max` per period, so a
 * client may send its whole allowance at once and then at the average rate.
 *
 * The buckets are in this process (MemoryTokenBuckets: a bounded LRU of `maxTracked` buckets, so a
 * flood of new addresses costs bounded memory) or shared by the fleet in Redis; the composition root
 * chooses. A message is counted against all its limits at once or against none.
 */
export class ClientRateLimits {
  #config: ClientRateLimitsConfig;
  #buckets: TokenBuckets;
  #any: boolean;

  constructor(config: ClientRateLimitsConfig, buckets: TokenBuckets = new MemoryTokenBuckets(config.maxTracked)) {
    this.#config = config;
    this.#buckets = buckets;
    this.#any = [config.perUser, config.perIp].some((l) => Object.values(l).some((v) => v !== null));
  }

  /** At MAIL FROM: counts one message, or says which limit is reached (nothing is counted then). */
  admitMessage(user: string | null, ip: string): Promise<LimitExceeded | null> {
    return this.#admit(user, ip, MESSAGE_LIMITS);
  }

  /** At each RCPT TO: counts one recipient, or says which limit is reached. */
  admitRecipient(user: string | null, ip: string): Promise<LimitExceeded | null> {
    return this.#admit(user, ip, RECIPIENT_LIMITS);
  }

  async #admit(user: string | null, ip: string, names: readonly LimitName[]): Promise<LimitExceeded | null> {
    if (!this.#any) return null;
    const address = unmapIpv4(ip);
    const subjects: { scope: 'user' | 'ip'; subject: string; limits: ClientRateLimit }[] = [{ scope: 'ip', subject: address, limits: this.#config.perIp }];
    if (user !== null) subjects.unshift({ scope: 'user', subject: user, limits: this.#config.perUser });
    const counted: (BucketSpec & { scope: 'user' | 'ip'; subject: string; limit: LimitName })[] = [];
    for (const { scope, subject, limits } of subjects) {
      for (const name of names) {
        const max = limits[name];
        if (max !== null) counted.push({ key: `${scope}:${subject}:${name}`, max, periodMs: PERIOD_MS[name], scope, subject, limit: name });
      }
    }
    if (counted.length === 0) return null;
    const verdict = await this.#buckets.take(counted);
    if (verdict.ok) return null;
    const { scope, subject, limit, max } = counted[verdict.index]!;
    return { scope, subject, limit, max, retryInMs: verdict.retryInMs };
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
