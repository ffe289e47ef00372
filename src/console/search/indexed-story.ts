/**
 * A message's story for the console: `mailtrail lookup`'s own story building (tools/lookup.ts,
 * `storyFrom`), fed by the index instead of a scan of the whole trail (the index knows which lines
 * can belong, and where they are), and each record checked against the hash chain with `mailtrail
 * verify`'s walk (tools/verify.ts, `verifyStretch`).
 */
import { basename } from 'node:path';
import type { LookupPrivacy } from '../../tools/address-forms.js';
import { storyFrom, type RelatedKeys, type StorySource } from '../../tools/lookup.js';
import type { Story } from '../../tools/lookup-story.js';
import { parseRecord, type TrailEntry } from '../../tools/trail-reader.js';
import { verifyStretch } from '../../tools/verify.js';
import type { IndexStore, LinePlace, StoryKeys } from './index-store.js';
import type { TrailLines } from './trail-lines.js';

/** Whether a story's records are intact in the chain (docs/api.md, "The story of a message"). */
export interface Verified {
  readonly ok: boolean;
  readonly detail: string;
  /** Records checked (the chained ones). */
  readonly checked: number;
}

/** Candidate lines read for one key of a story, at most. */
const MAX_LINES = 5_000;
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/i;

export async function indexedStory(
  key: string,
  store: IndexStore,
  lines: TrailLines,
  opts: { readonly limit: number; readonly privacy: LookupPrivacy | null },
): Promise<Story> {
  const source: StorySource = {
    direct: (needles) => read(store, lines, directKeys(needles)),
    related: (keys) => read(store, lines, relatedKeys(keys)),
    rereadable: true,
  };
  return storyFrom(key, source, opts);
}

function directKeys(needles: readonly string[]): StoryKeys {
  return {
    ids: needles.filter((n) => ULID.test(n)).map((n) => n.toUpperCase()),
    messageIds: needles,
    hashes: [],
    sessions: needles,
    queueIds: needles,
    addresses: needles.filter((n) => n.includes('@')),
  };
}

function relatedKeys(related: RelatedKeys): StoryKeys {
  const k = related.keys();
  return { ids: k.ids.map((id) => id.toUpperCase()), messageIds: k.messageIds, hashes: k.hashes, sessions: k.sessions, queueIds: [], addresses: [] };
}

async function* read(store: IndexStore, lines: TrailLines, keys: StoryKeys): AsyncGenerator<TrailEntry> {
  const places = store.storyLines(keys, MAX_LINES);
  const byHead = new Map<string, LinePlace[]>();
  for (const p of places) byHead.set(p.head, [...(byHead.get(p.head) ?? []), p]);
  for (const [head, group] of byHead) {
    const path = await lines.pathOf(head);
    if (path === null) continue;
    const texts = await lines.linesAt(
      path,
      group.map((p) => p.offset),
    );
    for (const p of group) {
      const raw = texts.get(p.offset);
      const record = raw === undefined ? null : parseRecord(raw);
      if (record && raw !== undefined) yield { record, raw, file: path, line: p.line, offset: p.offset };
    }
  }
}

/**
 * Each chained record of the story with the line that follows it in the trail: the record's hash
 * must hold and the next record must link to it (seq + 1, prev = its hash). The last record of the
 * trail has no successor yet: its own hash is checked.
 */
export async function verifyStory(story: Story, lines: TrailLines): Promise<Verified> {
  const chained = story.entries.filter((e) => typeof e.record.seq === 'number');
  if (chained.length === 0) {
    return { ok: false, detail: 'the records are not hash-chained (audit.chain is off, or they were written before it was on)', checked: 0 };
  }
  const files = await lines.files();
  const order = files.map((f) => f.path);
  // The line after each record: in the same file, or the first of the next file.
  const nextOffsets = new Map<string, number[]>();
  const wants = chained.map((e) => {
    const at = e.offset + Buffer.byteLength(e.raw) + 1;
    nextOffsets.set(e.file, [...(nextOffsets.get(e.file) ?? []), at]);
    return { entry: e, at };
  });
  const nextTexts = new Map<string, Map<number, string>>();
  for (const [file, offsets] of nextOffsets) nextTexts.set(file, await lines.linesAt(file, offsets));
  let newest = 0;
  for (const { entry, at } of wants) {
    let next: { file: string; line: number; text: string } | null = null;
    const same = nextTexts.get(entry.file)?.get(at);
    if (same !== undefined) next = { file: entry.file, line: entry.line + 1, text: same };
    else {
      const following = order[order.indexOf(entry.file) + 1];
      const first = following === undefined ? undefined : (await lines.linesAt(following, [0])).get(0);
      if (following !== undefined && first !== undefined) next = { file: following, line: 1, text: first };
    }
    if (next === null) newest += 1;
    const stretch = [{ file: entry.file, line: entry.line, text: entry.raw }, ...(next ? [next] : [])];
    const damage = verifyStretch(stretch);
    if (damage) {
      return { ok: false, detail: `${damage.kind} at ${basename(damage.file)}:${damage.line}: ${damage.detail}`, checked: chained.length };
    }
  }
  const tail = newest > 0 ? '; the newest record has no later record yet, so only its own hash is checked' : '';
  return {
    ok: true,
    detail: `${chained.length} record(s): each matches its hash and the next record of the trail links to it${tail} (the whole trail is proven by mailtrail verify)`,
    checked: chained.length,
  };
}
