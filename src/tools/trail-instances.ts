/**
 * The trails of several instances read together (docs/fleet.md, "Reading the trails of a fleet"):
 * which files belong to which instance's chain, and their records merged by time.
 *
 * Every file has one writer, so the instance of its first record is the instance of the file. Records
 * written before `instance` existed have none: such files are told apart by their file set, the name
 * without its rotation suffix (`a/audit.log.3`, `a/audit.log-20261125.gz` → `a/audit.log`), and join
 * the instance that goes on writing under the same name (one trail, upgraded in the middle).
 */
import type { AuditRecord } from '../audit/records.js';
import { ReadProblems, readTrail, STDIN, type ReadOptions, type TrailEntry } from './trail-reader.js';

export interface InstanceFiles {
  /** The instance id, or null for files whose records carry none. */
  readonly instance: string | null;
  /** How to name the group: the instance id, else `file set <name>`. */
  readonly label: string;
  /** Its files, in chain order: by the seq of their first record (files without one keep their place, last). */
  readonly files: readonly string[];
}

/** `instance` of a record; null for records written before the field existed. */
export function instanceOf(record: AuditRecord): string | null {
  const instance = (record as { instance?: unknown }).instance;
  return typeof instance === 'string' ? instance : null;
}

/** The trail a file belongs to by name: rotation suffixes (`.N`, `.gz`, dates, built-in stamps) removed. */
export function fileSetOf(file: string): string {
  let name = file.replace(/\.gz(\.partial)?$/, '');
  for (;;) {
    const next = name.replace(/(?:\.\d+|[.-]\d{4}-?\d{2}-?\d{2}(?:T\d{6}\.\d{3}Z)?)$/, '');
    if (next === name) return name;
    name = next;
  }
}

/** The files grouped by the instance that wrote them, in the order the instances first appear. */
export async function groupByInstance(files: readonly string[]): Promise<InstanceFiles[]> {
  const heads = await Promise.all(files.map(async (file) => ({ file, head: file === STDIN ? null : await firstRecord(file) })));
  const groups = new Map<string, { instance: string | null; sets: Set<string>; files: { file: string; seq: number | null; order: number }[] }>();
  const bySet = new Map<string, string>();
  // Instances first, so that a file set without an instance can join the instance writing under its name.
  const ordered = [...heads.entries()].sort(([ia, a], [ib, b]) => (instanceKey(a.head) === null ? 1 : 0) - (instanceKey(b.head) === null ? 1 : 0) || ia - ib);
  for (const [order, { file, head }] of ordered) {
    const set = fileSetOf(file);
    const instance = instanceKey(head);
    const key = instance ?? bySet.get(set) ?? `set:${set}`;
    let group = groups.get(key);
    if (!group) {
      group = { instance, sets: new Set(), files: [] };
      groups.set(key, group);
    }
    group.sets.add(set);
    if (!bySet.has(set)) bySet.set(set, key);
    group.files.push({ file, seq: typeof head?.seq === 'number' ? head.seq : null, order });
  }
  return [...groups.values()]
    .sort((a, b) => Math.min(...a.files.map((f) => f.order)) - Math.min(...b.files.map((f) => f.order)))
    .map((g) => ({
      instance: g.instance,
      label: g.instance ?? `file set ${[...g.sets][0]}`,
      files: [...g.files].sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity) || a.order - b.order).map((f) => f.file),
    }));
}

function instanceKey(head: AuditRecord | null): string | null {
  return head === null ? null : instanceOf(head);
}

async function firstRecord(file: string): Promise<AuditRecord | null> {
  for await (const entry of readTrail([file], { problems: new ReadProblems() })) return entry.record;
  return null;
}

/**
 * Every record of `files`, merged by `time` (each file is in time order: one writer each), ties in
 * the order the files were given. Memory: one pending record per file.
 */
export async function* mergeByTime(files: readonly string[], opts: ReadOptions): AsyncGenerator<TrailEntry> {
  if (files.length === 1) {
    yield* readTrail(files, opts);
    return;
  }
  const streams = files.map((file) => readTrail([file], opts));
  const heads = await Promise.all(streams.map((s) => s.next()));
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const head = heads[i]!;
      if (head.done) continue;
      if (best < 0 || timeOf(head.value) < timeOf((heads[best] as IteratorYieldResult<TrailEntry>).value)) best = i;
    }
    if (best < 0) return;
    const chosen = heads[best] as IteratorYieldResult<TrailEntry>;
    yield chosen.value;
    heads[best] = await streams[best]!.next();
  }
}

function timeOf(entry: TrailEntry): string {
  const time = (entry.record as { time?: unknown }).time;
  return typeof time === 'string' ? time : '';
}
