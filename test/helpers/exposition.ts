/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: it throws on anything
 * a scraper would reject, and returns the samples so tests can compare them with the trail.
 * https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 *
 * @example
 * const m = parseExposition(await (await fetch(`${relay.httpUrl}/metrics`)).text());
 * expect(m.value('mailtrail_relay_transactions_total', { outcome: 'delivered' })).toBe(3);
 */
import { execFile } from 'node:child_process';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  readonly samples: readonly Sample[];
  /** Metric family name → type from `# TYPE`. */
  readonly types: ReadonlyMap<string, string>;
  /** Sum of the samples of `name` whose labels include `match`. */
  value(name: string, match?: Record<string, string>): number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): Exposition {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a line feed');
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, i) => {
    const where = `line ${i + 1}`;
    if (line === '') return;
    if (line.startsWith('#')) return readComment(line, where, types, helps);
    samples.push(readSample(line, where));
  });
  for (const s of samples) {
    const family = familyOf(s.name, types);
    if (!types.has(family)) throw new Error(`${s.name}: sample without a # TYPE line`);
  }
  checkHistograms(samples, types);
  return {
    samples,
    types,
    value(name, match = {}) {
      return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
    },
  };
}

function readComment(line: string, where: string, types: Map<string, string>, helps: Set<string>): void {
  const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
  if (!m) return; // other comments are allowed
  const [, kind, name, rest] = m;
  if (!METRIC_NAME.test(name!)) throw new Error(`${where}: bad metric name ${name}`);
  if (kind === 'TYPE') {
    if (!TYPES.has(rest!)) throw new Error(`${where}: bad type ${rest}`);
    if (types.has(name!)) throw new Error(`${where}: second TYPE for ${name}`);
    types.set(name!, rest!);
  } else {
    if (helps.has(name!)) throw new Error(`${where}: second HELP for ${name}`);
    helps.add(name!);
  }
}

function readSample(line: string, where: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (!m) throw new Error(`${where}: not a sample: ${line}`);
  const value = parseValue(m[3]!, where);
  return { name: m[1]!, labels: m[2] ? readLabels(m[2], where) : {}, value };
}

function parseValue(text: string, where: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  // prom-client writes `Nan` for the event-loop lag's mean before its first sample; Prometheus reads
  // values with Go's strconv.ParseFloat, which takes NaN in any case, so that line scrapes fine.
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${text}`);
  return Number(text);
}

/** `{a="x",b="y\"z"}` with the format's three escapes. */
function readLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text.slice(1, -1);
  while (rest.length > 0) {
    const m = /^([^=,]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
    if (!m || !LABEL_NAME.test(m[1]!)) throw new Error(`${where}: bad labels ${text}`);
    if (m[1]! in labels) throw new Error(`${where}: label ${m[1]} twice`);
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(m[0].length);
  }
  return labels;
}

function familyOf(name: string, types: ReadonlyMap<string, string>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && (types.get(base) === 'histogram' || types.get(base) === 'summary')) return base;
  }
  return name;
}

/** Buckets ascend by `le`, counts never fall, `+Inf` equals `_count`. */
function checkHistograms(samples: readonly Sample[], types: ReadonlyMap<string, string>): void {
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      if (le === undefined) throw new Error(`${family}: bucket without le`);
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      const les = buckets.map((b) => parseValue(b.labels.le!, family));
      if (les.some((le, i) => i > 0 && le <= les[i - 1]!)) throw new Error(`${family}${key}: buckets not ascending`);
      if (buckets.some((b, i) => i > 0 && b.value < buckets[i - 1]!.value)) throw new Error(`${family}${key}: cumulative counts fall`);
      if (les[les.length - 1] !== Infinity) throw new Error(`${family}${key}: no +Inf bucket`);
      const count = samples.find((s) => s.name === `${family}_count` && JSON.stringify(s.labels) === key);
      if (!count || count.value !== buckets[buckets.length - 1]!.value) throw new Error(`${family}${key}: _count differs from +Inf bucket`);
    }
  }
}

/**
 * `promtool check metrics` on `text`, when promtool is installed (Debian package `prometheus`);
 * null when it is not. Exit code 1 is a parse error; 3 lists lint problems, one per line.
 */
export function promtoolCheckMetrics(text: string): Promise<{ code: number; problems: string[] } | null> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], { timeout: 20_000 }, (err, stdout, stderr) => {
      const errno = (err as (Error & { code?: number | string }) | null)?.code;
      if (errno === 'ENOENT') return resolve(null);
      const code = typeof errno === 'number' ? errno : err ? 1 : 0;
      const problems = `${stdout}${stderr}`.split('\n').filter(Boolean);
      resolve({ code, problems });
    });
    child.stdin?.end(text);
  });
}
