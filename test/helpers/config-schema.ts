/** Walks the config schema (zod) and config documents by key path, for tests that keep docs and code in step. */
import { z } from 'zod';

/** Strips the wrappers that do not add a key level: optional, nullable, defaults, preprocess/transform pipes. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  for (;;) {
    if (current instanceof z.ZodOptional || current instanceof z.ZodNullable || current instanceof z.ZodDefault || current instanceof z.ZodPrefault) {
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPipe) {
      // preprocess = transform → schema (the keys are in `out`); transform = schema → transform (in `in`).
      current = (current.in instanceof z.ZodTransform ? current.out : current.in) as z.ZodType;
    } else {
      return current;
    }
  }
}

export interface SchemaField {
  /** `upstreams[].tls.mode`: `[]` marks a list entry. */
  readonly path: string;
  /** The last key of the path (`mode`). */
  readonly key: string;
  /** The field's schema, unwrapped. */
  readonly schema: z.ZodType;
}

/** Every key the schema accepts, nested ones included, in schema order. */
export function schemaFields(schema: z.ZodType, prefix = ''): SchemaField[] {
  const object = unwrap(schema);
  if (!(object instanceof z.ZodObject)) return [];
  return Object.entries(object.shape as Record<string, z.ZodType>).flatMap(([key, child]) => {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    const inner = unwrap(child);
    const below = inner instanceof z.ZodArray ? schemaFields(inner.element as z.ZodType, `${path}[]`) : schemaFields(inner, path);
    return [{ path, key, schema: inner }, ...below];
  });
}

/** Every key path the schema accepts, e.g. `upstreams`, `upstreams[].tls.mode`. */
export function schemaKeyPaths(schema: z.ZodType): string[] {
  return schemaFields(schema).map((f) => f.path);
}

/** Key paths present in a parsed YAML document (arrays of mappings become `key[]`). */
export function yamlKeyPaths(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((item) => yamlKeyPaths(item, `${prefix}[]`));
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    return [path, ...yamlKeyPaths(child, path)];
  });
}
