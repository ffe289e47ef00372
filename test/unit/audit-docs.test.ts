import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RECORD_FIELDS } from '../../src/audit/records.js';

/** The first-column field names of the table under `## \`<type>\``. */
function documentedFields(doc: string, type: string): string[] {
  const start = doc.indexOf(`## \`${type}\``);
  expect(start, `docs/audit-record.md has a section for ${type}`).toBeGreaterThanOrEqual(0);
  const section = doc.slice(start).split(/\n## /)[0]!;
  return [...section.matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]!);
}

describe('the audit record reference', () => {
  const doc = readFileSync(new URL('../../docs/audit-record.md', import.meta.url), 'utf8');

  it.each(Object.keys(RECORD_FIELDS) as (keyof typeof RECORD_FIELDS)[])('lists exactly the fields of the %s record type', (type) => {
    expect(documentedFields(doc, type)).toEqual([...RECORD_FIELDS[type]]);
  });
});
