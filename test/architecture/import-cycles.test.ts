import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cycles, importGraph, layerGraph } from './import-graph.js';

const src = fileURLToPath(new URL('../../src', import.meta.url));

describe('the import graph of src/', () => {
  const files = importGraph(src);

  it('has no cycle between files, type-only imports included', () => {
    expect(cycles(files)).toEqual([]);
  });

  it('has no cycle between top-level folders, so dependencies point one way', () => {
    expect(cycles(layerGraph(files))).toEqual([]);
  });

  it('resolves every relative import to a file that exists', () => {
    const missing = [...files].flatMap(([from, targets]) => targets.filter((t) => !files.has(t)).map((t) => `${from} → ${t}`));
    expect(missing).toEqual([]);
  });
});
