import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Source files whose comments may cite documents: the code, the tests, the soak and the bench. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'results' ? [] : sources(path);
    return /\.(ts|mjs)$/.test(e.name) ? [path] : [];
  });
}

describe('documents cited by the code', () => {
  it('are all in this repository: docs/, the README, an RFC or an upstream issue, nothing else', () => {
    const dangling: string[] = [];
    for (const file of ['src', 'test', 'soak', 'bench'].flatMap((d) => sources(join(root, d)))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:\.\.\/)*\b(docs\/[\w.-]+\.md|[A-Z][A-Z-]+\.md)\b/g)) {
        const cited = m[1]!;
        if (!existsSync(join(root, cited))) dangling.push(`${relative(root, file)}: ${cited}`);
      }
    }
    expect(dangling).toEqual([]);
  });
});
