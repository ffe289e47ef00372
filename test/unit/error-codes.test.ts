import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERR } from '../../src/error-codes.js';

const DOC = readFileSync(new URL('../../docs/failures.md', import.meta.url), 'utf8');

describe('error codes', () => {
  it('are listed in docs/failures.md exactly as in src/error-codes.ts, no more, no less', () => {
    const section = DOC.slice(DOC.indexOf('\n## Error codes\n'));
    const documented = [...section.matchAll(/^\| `(E[A-Z]+)` \|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual(Object.values(ERR).sort());
  });

  it('are unique and follow the E-prefixed capitals of system and nodemailer codes', () => {
    const codes = Object.values(ERR);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^E[A-Z]+$/);
  });
});
