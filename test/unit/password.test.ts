import { describe, expect, it } from 'vitest';
import { hashPassword, isPasswordHash, verifyPassword } from '../../src/auth/password.js';

describe('password hashing', () => {
  it('produces a scrypt hash with the default parameters, a 16-byte salt and a 32-byte key', async () => {
    const hash = await hashPassword('correct horse');
    const [scheme, n, r, p, salt, key] = hash.split('$');
    expect([scheme, n, r, p]).toEqual(['scrypt', '16384', '8', '1']);
    expect(Buffer.from(salt ?? '', 'base64')).toHaveLength(16);
    expect(Buffer.from(key ?? '', 'base64')).toHaveLength(32);
  });

  it('verifies the password a hash was made from', async () => {
    const hash = await hashPassword('correct horse');
    await expect(verifyPassword('correct horse', { password: null, passwordHash: hash })).resolves.toBe(true);
  });

  it('rejects a wrong password against a hash', async () => {
    const hash = await hashPassword('correct horse');
    await expect(verifyPassword('battery staple', { password: null, passwordHash: hash })).resolves.toBe(false);
  });

  it('salts every hash differently', async () => {
    expect(await hashPassword('same')).not.toBe(await hashPassword('same'));
  });

  it('compares a plain configured password, whatever the lengths', async () => {
    const stored = { password: 's3cret', passwordHash: null };
    await expect(verifyPassword('s3cret', stored)).resolves.toBe(true);
    await expect(verifyPassword('s3cret-but-longer', stored)).resolves.toBe(false);
    await expect(verifyPassword('', stored)).resolves.toBe(false);
  });

  it('never matches a user without a password or with a malformed hash', async () => {
    await expect(verifyPassword('x', { password: null, passwordHash: null })).resolves.toBe(false);
    await expect(verifyPassword('x', { password: null, passwordHash: 'scrypt$garbage' })).resolves.toBe(false);
  });

  it('recognises its own hash format and refuses others', async () => {
    expect(isPasswordHash(await hashPassword('x'))).toBe(true);
    expect(isPasswordHash('$2b$10$abcdefghijklmnopqrstuv')).toBe(false);
    expect(isPasswordHash('scrypt$16384$8$1$c2FsdA==')).toBe(false);
  });

  it('refuses hash parameters that are not a power of two or would need too much memory', () => {
    const salt = Buffer.alloc(16).toString('base64');
    const key = Buffer.alloc(32).toString('base64');
    expect(isPasswordHash(`scrypt$16384$8$1$${salt}$${key}`)).toBe(true);
    expect(isPasswordHash(`scrypt$10000$8$1$${salt}$${key}`)).toBe(false);
    expect(isPasswordHash(`scrypt$16777216$8$1$${salt}$${key}`)).toBe(false);
  });
});
