import { randomBytes } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * ULID generator (https://github.com/ulid/spec): 48-bit milliseconds + 80 random bits, Crockford
 * base32, so ids sort by time in the trail and in `ls`. Random bytes are drawn in blocks to keep
 * the per-message cost to a slice.
 */
export class IdGenerator {
  #pool = Buffer.alloc(0);
  #offset = 0;

  next(now: number = Date.now()): string {
    return encodeTime(now) + this.#randomPart();
  }

  /** A short random id for connections (not time-sortable; only unique within a process's lifetime). */
  short(): string {
    return this.#randomPart().slice(0, 10).toLowerCase();
  }

  #randomPart(): string {
    if (this.#offset + 10 > this.#pool.length) {
      this.#pool = randomBytes(10 * 256);
      this.#offset = 0;
    }
    let out = '';
    // 80 bits → 16 base32 characters, 5 bits at a time.
    let bits = 0;
    let value = 0;
    for (let i = 0; i < 10; i++) {
      value = (value << 8) | this.#pool[this.#offset + i]!;
      bits += 8;
      while (bits >= 5) {
        bits -= 5;
        out += CROCKFORD[(value >>> bits) & 31];
      }
      value &= (1 << bits) - 1;
    }
    this.#offset += 10;
    return out;
  }
}

function encodeTime(ms: number): string {
  let out = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    out = CROCKFORD[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}
