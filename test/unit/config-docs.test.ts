import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { z } from 'zod';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const docPath = join(root, 'docs', 'config.md');
const examplePath = join(root, 'examples', 'mailtrail.yaml');

/** Strips the wrappers that do not add a key level: optional, nullable, defaults, preprocess/transform pipes. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  for (;;) {
    if (
      current instanceof z.ZodOptional ||
      current instanceof z.ZodNullable ||
      current instanceof z.ZodDefault ||
      current instanceof z.ZodPrefault
    ) {
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPipe) {
      // preprocess = transform → schema (the keys are in `out`); transform = schema → transform (in `in`).
      current = (current.in instanceof z.ZodTransform ? current.out : current.in) as z.ZodType;
    } else {
      return current;
    }
  }
}

/** Every key path the schema accepts, e.g. `upstreams`, `upstreams[].tls.mode`. */
function schemaKeyPaths(schema: z.ZodType, prefix = ''): string[] {
  const object = unwrap(schema);
  if (!(object instanceof z.ZodObject)) return [];
  return Object.entries(object.shape as Record<string, z.ZodType>).flatMap(([key, child]) => {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    const inner = unwrap(child);
    const below = inner instanceof z.ZodArray ? schemaKeyPaths(inner.element as z.ZodType, `${path}[]`) : schemaKeyPaths(inner, path);
    return [path, ...below];
  });
}

/** Key paths in the first column of the table under "## Keys". */
function documentedKeyPaths(markdown: string): string[] {
  const section = markdown.split(/^## /m).find((s) => s.startsWith('Keys\n')) ?? '';
  return [...section.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((m) => m[1] ?? '');
}

/** Key paths present in a parsed YAML document (arrays of mappings become `key[]`). */
function yamlKeyPaths(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((item) => yamlKeyPaths(item, `${prefix}[]`));
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    return [path, ...yamlKeyPaths(child, path)];
  });
}

describe('config documentation', () => {
  const schemaPaths = schemaKeyPaths(configSchema);

  it('finds the nested keys when walking the schema', () => {
    expect(schemaPaths).toEqual(expect.arrayContaining(['listen[].port', 'upstreams[].timeouts.connect', 'log.level']));
  });

  it('documents every key the schema accepts', () => {
    const documented = new Set(documentedKeyPaths(readFileSync(docPath, 'utf8')));
    expect(schemaPaths.filter((p) => !documented.has(p))).toEqual([]);
  });

  it('documents no key the schema does not accept', () => {
    const accepted = new Set(schemaPaths);
    expect(documentedKeyPaths(readFileSync(docPath, 'utf8')).filter((p) => !accepted.has(p))).toEqual([]);
  });

  it('documents each key once', () => {
    const documented = documentedKeyPaths(readFileSync(docPath, 'utf8'));
    expect(documented.filter((p, i) => documented.indexOf(p) !== i)).toEqual([]);
  });

  it('shows every key in the example config', () => {
    const shown = new Set(yamlKeyPaths(YAML.parse(readFileSync(examplePath, 'utf8'))));
    expect(schemaPaths.filter((p) => !shown.has(p))).toEqual([]);
  });

  it('ships an example config that loads', () => {
    const env = { BILLING_SMTP_PASSWORD: 'example', SES_SMTP_USER: 'user', SES_SMTP_PASSWORD: 'pass' };
    expect(() => loadConfig({ file: examplePath, env, cwd: root })).not.toThrow();
  });
});
