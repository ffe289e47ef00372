import type { RedisLink } from '../state/redis-link.js';
import { DuplicateTracker, envelopeKey, retryKey, type DuplicateCandidate, type DuplicateLinks } from './duplicate-tracker.js';

/**
 * The `duplicateOf` links shared by the fleet: a record that a retry may follow is kept in Redis
 * under its envelope key (SET NX, so the first record stays the reference, PX `audit.duplicateWindow`),
 * and each message's lookup (GET) runs while it is being relayed, so it adds no time unless Redis is
 * slower than the upstream. Plain commands: there is nothing to count.
 *
 * This instance's own DuplicateTracker remembers its records too and answers while Redis is
 * unreachable (a retry that lands on the same instance is still linked), or when Redis has lost
 * the key.
 */
export class RedisDuplicates implements DuplicateLinks {
  #link: RedisLink;
  #local: DuplicateTracker;
  #window: number;

  constructor(link: RedisLink, window: number) {
    this.#link = link;
    this.#window = window;
    this.#local = new DuplicateTracker({ window });
  }

  async earlier(sha256: string, from: string, to: readonly string[]): Promise<string | null> {
    if (sha256 === '') return null;
    const shared = await this.#link.run(
      'duplicates',
      () => this.#link.client.get(keyOf(envelopeKey(sha256, from, to))),
      () => null,
    );
    return shared ?? this.#local.earlier(sha256, from, to);
  }

  written(record: DuplicateCandidate): void {
    this.#local.written(record);
    const key = retryKey(record);
    if (key === null) return;
    this.#link.send('duplicates', () => this.#link.client.set(keyOf(key), record.id, 'PX', this.#window, 'NX'));
  }
}

function keyOf(envelope: string): string {
  return `duplicate:${envelope}`;
}
