import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATER_FIELDS, OPTIONAL_FIELDS, RECORD_FIELDS, type AuditRecord } from '../../src/audit/records.js';
import { CLIENT_REJECT_CLASSES, UPSTREAM_FAILURE_CLASSES } from '../../src/classify/failure-class.js';
import { trailRecords } from '../../bench/make-trail.mjs';
import { makeRealTrail } from '../helpers/real-trail.js';
import { alert, removeDir, tempDir } from '../helpers/trail-fixtures.js';

interface JsonSchema {
  $defs: Record<string, { properties?: Record<string, unknown>; required?: string[]; enum?: string[] }>;
  oneOf: { $ref: string }[];
}

const ROOT = new URL('../../', import.meta.url);
const schema = JSON.parse(readFileSync(new URL('docs/audit-record.schema.json', ROOT), 'utf8')) as JsonSchema;
const doc = readFileSync(new URL('docs/audit-record.md', ROOT), 'utf8');
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(schema);
const TYPES = Object.keys(RECORD_FIELDS) as (keyof typeof RECORD_FIELDS)[];

function errorsOf(record: unknown): string {
  validate(record);
  return JSON.stringify(validate.errors?.filter((e) => !e.schemaPath.startsWith('#/oneOf')).slice(0, 5));
}

/** The first-column field names of the table under `## \`<type>\`` in the reference. */
function documentedFields(type: string): string[] {
  const start = doc.indexOf(`## \`${type}\``);
  if (start < 0) return [];
  const section = doc.slice(start).split(/\n## /)[0]!;
  return [...section.matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]!);
}

describe('the audit record JSON Schema', () => {
  let dir: string;
  let real: AuditRecord[];

  beforeAll(async () => {
    dir = await tempDir();
    const trail = await makeRealTrail(join(dir, 'audit.log'));
    real = readFileSync(trail.auditFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('is a draft 2020-12 schema choosing the record type with oneOf', () => {
    expect((schema as unknown as { $schema: string }).$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.oneOf.map((s) => s.$ref)).toEqual(TYPES.map((t) => `#/$defs/${t}`));
  });

  it('accepts every record a real relay wrote: every outcome, refusals, sessions, checkpoints and a recovered spool entry', () => {
    const outcomes = new Set(real.filter((r) => r.type === 'relay').map((r) => (r as { outcome: string }).outcome));
    expect([...outcomes].sort()).toEqual(['aborted', 'deferred', 'delivered', 'partial', 'queued', 'rejected', 'unknown']);
    expect(new Set(real.map((r) => r.type))).toEqual(new Set(['relay', 'reject', 'session', 'checkpoint', 'spool']));
    expect(real.some((r) => r.type === 'relay' && r.duplicateOf !== null)).toBe(true);
    expect(real.some((r) => r.type === 'relay' && new Set(r.attempts.map((a) => a.upstream)).size > 1)).toBe(true);
    for (const r of real) expect(validate(r), `${r.type} ${r.id}: ${errorsOf(r)}`).toBe(true);
  });

  it('accepts alert records and every record of the benchmark trail generator, delivery and spool records included', () => {
    expect(validate(alert()), errorsOf(alert())).toBe(true);
    expect(validate(alert({ state: 'resolved', upstream: null, class: null, sinks: [] }))).toBe(true);
    const generated = [...trailRecords({ records: 3000, seed: 9 })];
    expect([...new Set(generated.map((r) => r.type))]).toEqual(expect.arrayContaining(['delivery', 'spool']));
    for (const r of generated) expect(validate(r), `${r.type}: ${errorsOf(r)}`).toBe(true);
  });

  it('accepts every example of the reference page', () => {
    const examples = [...doc.matchAll(/^```json\n(.*)\n```$/gm)].map((m) => JSON.parse(m[1]!) as { type: string; id: string });
    expect(new Set(examples.map((e) => e.type))).toEqual(new Set(TYPES));
    for (const e of examples) expect(validate(e), `${e.type} ${e.id}: ${errorsOf(e)}`).toBe(true);
  });

  it('refuses a spool field on a record type without one, and a spool record with an unknown event', () => {
    const queued = real.find((r) => r.type === 'relay' && r.outcome === 'queued')!;
    expect(validate({ ...queued, spool: { mode: 'later', reason: 'x' } })).toBe(false);
    const recovered = real.find((r) => r.type === 'spool')!;
    expect(validate({ ...recovered, event: 'vanished' })).toBe(false);
  });

  it('refuses a record with an unknown field, a missing field, a wrong type or an unknown type', () => {
    const relay = real.find((r) => r.type === 'relay')!;
    expect(validate({ ...relay, extra: 1 })).toBe(false);
    const { outcome: _omitted, ...missing } = relay as unknown as Record<string, unknown>;
    expect(validate(missing)).toBe(false);
    expect(validate({ ...relay, outcome: 'maybe' })).toBe(false);
    expect(validate({ ...relay, timing: { ...(relay as { timing: object }).timing, totalMs: '96' } })).toBe(false);
    expect(validate({ ...relay, type: 'relayed' })).toBe(false);
  });

  it.each(TYPES)('lists the same fields for %s records as the reference page and the TypeScript type', (type) => {
    const inSchema = Object.keys(schema.$defs[type]!.properties ?? {});
    expect(inSchema).toEqual([...RECORD_FIELDS[type]]);
    expect(documentedFields(type)).toEqual([...RECORD_FIELDS[type]]);
  });

  it("requires every field except the chain fields (absent when the chain is off), the relay record's spool (absent unless spooled) and those added later (absent in older trails)", () => {
    for (const type of TYPES) {
      const required = schema.$defs[type]!.required ?? [];
      expect(required).toEqual(RECORD_FIELDS[type].filter((f) => !OPTIONAL_FIELDS.has(f) && !LATER_FIELDS.includes(f)));
    }
  });

  it('finds the instance on every record a real relay wrote, and accepts records of trails written before it existed', () => {
    for (const r of real) expect(r.instance, `${r.type} ${r.id}`).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    const { instance: _absent, ...older } = real.find((r) => r.type === 'relay')! as unknown as Record<string, unknown>;
    expect(validate(older), errorsOf(older)).toBe(true);
    expect(validate({ ...older, instance: 'not a name' })).toBe(false);
  });

  it('names the same failure classes as the code', () => {
    expect(new Set(schema.$defs.failureClass!.enum)).toEqual(new Set([...UPSTREAM_FAILURE_CLASSES, ...CLIENT_REJECT_CLASSES]));
    expect(schema.$defs.clientRejectClass!.enum).toEqual([...CLIENT_REJECT_CLASSES]);
  });

  it('ships in the package', () => {
    const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('docs');
    expect(doc).toContain('audit-record.schema.json');
  });
});
