import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const PAGES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f)),
];

/** Every ```yaml block of a page, with the line it starts on. */
function yamlBlocks(page: string): { line: number; text: string }[] {
  const lines = readFileSync(join(ROOT, page), 'utf8').split('\n');
  const blocks: { line: number; text: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '```yaml') continue;
    const end = lines.indexOf('```', i + 1);
    blocks.push({ line: i + 2, text: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

describe('the YAML shown in the docs', () => {
  it.each(PAGES)('parses in every yaml block of %s (an operator copies these)', (page) => {
    const broken = yamlBlocks(page)
      .map((b) => ({ line: b.line, errors: YAML.parseDocument(b.text).errors.map((e) => e.message.split('\n')[0]) }))
      .filter((b) => b.errors.length > 0);
    expect(broken).toEqual([]);
  });
});
