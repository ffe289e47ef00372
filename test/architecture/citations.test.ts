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

  it('name source files that exist, in the code, the tests and the docs (folder/file.ts under src/)', () => {
    const folders = new Set(
      readdirSync(join(root, 'src'), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name),
    );
    // Folder names the code used to have: a mention of one is a comment that was not updated.
    for (const old of ['relay', 'message']) folders.add(old);
    const pages = [
      'README.md',
      ...readdirSync(join(root, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => join('docs', f)),
    ];
    const stale: string[] = [];
    for (const file of [...['src', 'test', 'soak', 'bench'].flatMap((d) => sources(join(root, d))), ...pages.map((p) => join(root, p))]) {
      for (const m of readFileSync(file, 'utf8').matchAll(/(?<![\w./-])([a-z-]+)\/((?:[a-z-]+\/)*[a-z-]+)\.ts\b/g)) {
        if (!folders.has(m[1]!)) continue;
        const named = `src/${m[1]}/${m[2]}.ts`;
        if (!existsSync(join(root, named))) stale.push(`${relative(root, file)}: ${m[0]}`);
      }
    }
    expect(stale).toEqual([]);
  });
});
