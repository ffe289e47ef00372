import { randomBytes } from 'node:crypto';
import { monotonicFactory, type ULIDFactory } from 'ulid';

/** Random bytes drawn per refill: one `randomBytes` call serves many ids. */
const POOL_BYTES = 4096;

/**
 * ULIDs (https://github.com/ulid/spec): 48-bit milliseconds + 80 random bits, Crockford base32,
 * monotonic within a process: ids made in the same millisecond (or while the clock steps back)
 * increment the random part instead of drawing a new one, so ids sort in creation order in the trail,
 * in `ls` and in every tool that orders by id. The `ulid` package does the encoding and the
 * monotonic increment; its randomness comes from a pool of `crypto.randomBytes`, because its default
 * source makes one system call per character.
 */
export class IdGenerator {
  #pool = Buffer.alloc(0);
  #offset = 0;
  readonly #ulid: ULIDFactory = monotonicFactory(() => this.#byte() / 256);

  next(now: number = Date.now()): string {
    return this.#ulid(now);
  }

  #byte(): number {
    if (this.#offset >= this.#pool.length) {
      this.#pool = randomBytes(POOL_BYTES);
      this.#offset = 0;
    }
    return this.#pool[this.#offset++]!;
  }
}
