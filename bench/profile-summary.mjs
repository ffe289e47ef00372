/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): where the CPU time went, by area (mailtrail,
 * each package, Node internals, GC) and by function, self and inclusive.
 *
 *   node bench/profile-summary.mjs bench/results/mailtrail.cpuprofile [MESSAGES]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where a function lives: "mailtrail", a package name, "node", or V8's pseudo-frames. */
function areaOf(frame) {
  const url = frame.url ?? '';
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : 'native';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.startsWith('node:')) return 'node';
  if (/\/dist\//.test(url)) return 'mailtrail';
  return 'other';
}

function shortUrl(url) {
  if (!url) return '';
  const m = /node_modules\/(.*)$/.exec(url) ?? /\/(dist\/.*)$/.exec(url);
  return m ? m[1] : url.replace(/^file:\/\//, '');
}

function keyOf(frame) {
  return `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
}

/** `messages`: how many messages the profiled process relayed, for the per-message column. */
export function summarizeProfile(profile, messages = null) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  // Self time per node from the samples and their time deltas (µs).
  const selfUs = new Map();
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    totalUs += dt;
  });
  const idleUs = [...nodes.values()].filter((n) => n.callFrame.functionName === '(idle)').reduce((s, n) => s + (selfUs.get(n.id) ?? 0), 0);
  const busyUs = totalUs - idleUs;

  const byArea = new Map();
  const bySelf = new Map();
  for (const n of nodes.values()) {
    const us = selfUs.get(n.id) ?? 0;
    if (!us || n.callFrame.functionName === '(idle)') continue;
    const area = areaOf(n.callFrame);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    const key = keyOf(n.callFrame);
    bySelf.set(key, (bySelf.get(key) ?? 0) + us);
  }

  // Inclusive time per function, counting a function once per stack (recursion).
  const parent = new Map();
  for (const n of nodes.values()) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map();
  for (const [id, us] of selfUs) {
    if (nodes.get(id)?.callFrame.functionName === '(idle)') continue;
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = nodes.get(cur).callFrame;
      const area = areaOf(frame);
      if (area === 'node' || area === 'native' || area.startsWith('(')) continue;
      const key = keyOf(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }

  const top = (map, n) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({
        name,
        ms: Math.round(us / 100) / 10,
        share: us / busyUs,
        usPerMessage: messages ? Math.round((us / messages) * 10) / 10 : null,
      }));
  return {
    messages,
    sampledMs: Math.round(totalUs / 1000),
    busyMs: Math.round(busyUs / 1000),
    byArea: top(byArea, 20),
    topSelf: top(bySelf, 30),
    inclusive: top(inclusive, 40),
  };
}

export function formatProfile(s) {
  const pct = (x) => `${(x * 100).toFixed(1).padStart(5)} %`;
  const per = (f) => (f.usPerMessage === null ? '' : `${String(f.usPerMessage).padStart(7)} µs/msg`);
  const row = (f) => `  ${pct(f.share)}  ${String(f.ms).padStart(8)} ms ${per(f)}  ${f.name}`;
  const lines = [
    `CPU profile: ${s.busyMs} ms on the main thread (of ${s.sampledMs} ms sampled)` + (s.messages ? `, ${s.messages} messages relayed` : ''),
    '',
    'by area (self time):',
  ];
  for (const a of s.byArea) lines.push(row(a));
  lines.push('', 'functions by self time:');
  for (const f of s.topSelf) lines.push(row(f));
  lines.push('', 'mailtrail and package functions by inclusive time:');
  for (const f of s.inclusive) lines.push(row(f));
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/profile-summary.mjs FILE.cpuprofile\n');
    process.exit(2);
  }
  const messages = process.argv[3] ? Number(process.argv[3]) : null;
  process.stdout.write(formatProfile(summarizeProfile(JSON.parse(readFileSync(file, 'utf8')), messages)) + '\n');
}
