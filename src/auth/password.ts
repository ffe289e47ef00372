/**
 * Password hashing and checking for SMTP AUTH users. Hashes are scrypt (memory-hard, built into Node)
 * stored as `scrypt$N$r$p$saltBase64$hashBase64`, so the parameters travel with the hash and can be
 * raised later without invalidating existing entries.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** Cost parameters for new hashes: about 16 MiB and a few tens of ms per check on current hardware. */
const DEFAULT_PARAMS: ScryptParams = { N: 16_384, r: 8, p: 1 };
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/**
 * Ceiling on the memory a stored hash may ask for. A config file is trusted, but a pasted hash with an
 * absurd N would otherwise make every AUTH attempt allocate gigabytes.
 */
const MAX_SCRYPT_MEMORY = 256 * 2 ** 20;

const HASH_FORMAT = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

interface ParsedHash extends ScryptParams {
  readonly salt: Buffer;
  readonly key: Buffer;
}

export interface StoredPassword {
  readonly password: string | null;
  readonly passwordHash: string | null;
}

/** A new `scrypt$16384$8$1$salt$hash` string for `plain`, with a fresh random salt. */
export async function hashPassword(plain: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await deriveKey(plain, salt, KEY_BYTES, DEFAULT_PARAMS);
  const { N, r, p } = DEFAULT_PARAMS;
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** True when `s` is a hash in the format `hashPassword` produces, with sane parameters. */
export function isPasswordHash(s: string): boolean {
  return parseHash(s) !== null;
}

/**
 * Checks `plain` against a user's configured password or password hash in constant time.
 * A user with neither (or a malformed hash) never matches.
 */
export async function verifyPassword(plain: string, stored: StoredPassword): Promise<boolean> {
  if (stored.passwordHash !== null) return verifyAgainstHash(plain, stored.passwordHash);
  if (stored.password !== null) return verifyAgainstPlain(plain, stored.password);
  return false;
}

/** The salt of the decoy check: random per process, so the decoy never matches anything stored. */
const DECOY_SALT = randomBytes(SALT_BYTES);

/**
 * The answer for a username that does not exist: false, after the scrypt work of checking a hash of
 * the default cost, so that an unknown username costs what a known one does and the time an AUTH
 * takes does not tell whether its username exists.
 */
export async function verifyNoSuchUser(plain: string): Promise<false> {
  await deriveKey(plain, DECOY_SALT, KEY_BYTES, DEFAULT_PARAMS);
  return false;
}

async function verifyAgainstHash(plain: string, storedHash: string): Promise<boolean> {
  const parsed = parseHash(storedHash);
  if (parsed === null) return false;
  const key = await deriveKey(plain, parsed.salt, parsed.key.length, parsed);
  return timingSafeEqual(key, parsed.key);
}

/** timingSafeEqual needs equal lengths; comparing digests hides the configured password's length too. */
function verifyAgainstPlain(plain: string, configured: string): boolean {
  return timingSafeEqual(sha256(plain), sha256(configured));
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(normalise(s), 'utf8').digest();
}

/**
 * The same visible password can arrive as different code points (é precomposed or not) depending on
 * the client's keyboard and OS; NFC makes them compare equal, in the spirit of SASLprep (RFC 4013).
 */
function normalise(s: string): string {
  return s.normalize('NFC');
}

function parseHash(s: string): ParsedHash | null {
  const match = HASH_FORMAT.exec(s);
  if (!match) return null;
  const [, n, r, p, salt, key] = match;
  const params = { N: Number(n), r: Number(r), p: Number(p) };
  if (!validParams(params)) return null;
  const saltBytes = Buffer.from(salt ?? '', 'base64');
  const keyBytes = Buffer.from(key ?? '', 'base64');
  if (saltBytes.length < 8 || keyBytes.length < 16) return null;
  return { ...params, salt: saltBytes, key: keyBytes };
}

/** scrypt requires N to be a power of two above 1; r and p at least 1; and we cap the memory. */
function validParams({ N, r, p }: ScryptParams): boolean {
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  return powerOfTwo && r >= 1 && p >= 1 && scryptMemory({ N, r, p }) <= MAX_SCRYPT_MEMORY;
}

/** OpenSSL's accounting: 128·r·p for B plus 128·r·(N+2) for V; Node refuses anything above maxmem. */
function scryptMemory({ N, r, p }: ScryptParams): number {
  return 128 * r * p + 128 * r * (N + 2);
}

function deriveKey(plain: string, salt: Buffer, length: number, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: scryptMemory(params) + 2 ** 20 };
  return new Promise((resolve, reject) => {
    scrypt(normalise(plain), salt, length, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}
