/**
 * What `npm pack` ships: the built program behind a working bin, the licence, the docs and every file
 * they link to; never the tests, sources, benchmarks or keys. Read from `npm pack --dry-run --json`
 * without lifecycle scripts (no build, no network), so it takes a second.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from '../../soak/mailtrail-child.js';

const run = promisify(execFile);

interface PackageJson {
  readonly license: string;
  readonly bin: Record<string, string>;
  readonly main: string;
  readonly scripts: Record<string, string>;
}

const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;

describe('the npm package', () => {
  let files: Set<string>;

  beforeAll(async () => {
    await ensureBuilt();
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeout: 60_000 });
    const [pack] = JSON.parse(stdout) as [{ files: { path: string }[] }];
    files = new Set(pack.files.map((f) => f.path));
  }, 120_000);

  it('ships the bin, the program it runs, package.json (read for --version), the README and the licence', () => {
    for (const file of [...Object.values(PKG.bin), PKG.main, 'dist/cli.js', 'package.json', 'README.md', 'LICENSE']) {
      expect(files.has(normalize(file)), `${file} is not in the package`).toBe(true);
    }
    expect(readFileSync(join(ROOT, PKG.bin.mailtrail!), 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
  });

  it('builds dist/ when packed (a fresh clone has none), and npm start runs serve', () => {
    expect(PKG.scripts.prepack).toMatch(/npm run build/);
    expect(PKG.scripts.start).toBe('node dist/cli.js serve');
  });

  it('carries the MIT licence it declares', () => {
    expect(PKG.license).toBe('MIT');
    const licence = readFileSync(join(ROOT, 'LICENSE'), 'utf8');
    expect(licence).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} mailtrail contributors\n/);
  });

  it("ships the console's built pages: index.html and every script and stylesheet it loads", () => {
    expect(files.has('dist/console/index.html')).toBe(true);
    const page = readFileSync(join(ROOT, 'dist/console/index.html'), 'utf8');
    const loaded = [...page.matchAll(/(?:src|href)="\/(assets\/[^"]+)"/g)].map((m) => `dist/console/${m[1]!}`);
    expect(loaded.some((f) => f.endsWith('.js'))).toBe(true);
    expect(loaded.some((f) => f.endsWith('.css'))).toBe(true);
    for (const file of loaded) expect(files.has(file), `${file} is not in the package`).toBe(true);
  });

  it('ships every example', () => {
    for (const name of readdirSync(join(ROOT, 'examples'))) expect(files.has(`examples/${name}`), `examples/${name}`).toBe(true);
  });

  it('ships every file the README and the docs link to', () => {
    const pages = ['README.md', ...[...files].filter((f) => f.startsWith('docs/') && f.endsWith('.md'))];
    for (const page of pages) {
      const text = readFileSync(join(ROOT, page), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const path = normalize(join(dirname(page), target!));
        expect(files.has(path), `${page} links to ${target}, which is not in the package`).toBe(true);
      }
    }
  });

  it("ships no tests, sources (the server's or the pages'), benchmarks, soak, CI files, source maps, keys or tarballs", () => {
    const unwanted = [...files].filter(
      (f) => /^(test|src|web|bench|soak|\.ci|node_modules|data)\//.test(f) || /\.(map|ts|tgz|key|pem|crt)$/.test(f) || f === 'deploy/compose.yaml',
    );
    expect(unwanted).toEqual([]);
  });
});
