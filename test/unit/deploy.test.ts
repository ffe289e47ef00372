import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { EventBus } from '../../src/event-bus.js';
import type { RelayEvents } from '../../src/observe/relay-events.js';
import { Metrics } from '../../src/observe/metrics.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const deploy = join(root, 'deploy');
const RULES = join(deploy, 'prometheus', 'mailtrail-rules.yaml');
const RULE_TESTS = join(deploy, 'prometheus', 'mailtrail-rules.test.yaml');
const DASHBOARD = join(deploy, 'grafana', 'dashboards', 'mailtrail.json');

/**
 * Runs promtool; null when it is not installed (Debian package `prometheus`). Under CI (.ci/run
 * installs it) a missing promtool is a failure, not a skip.
 */
function promtool(args: string[]): Promise<{ code: number; output: string } | null> {
  return new Promise((done, fail) => {
    execFile('promtool', args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = (err as (Error & { code?: number | string }) | null)?.code;
      if (code === 'ENOENT' && process.env.CI) return fail(new Error('promtool is not installed (.ci/run installs the Debian package prometheus)'));
      if (code === 'ENOENT') return done(null);
      done({ code: typeof code === 'number' ? code : err ? 1 : 0, output: `${stdout}${stderr}` });
    });
  });
}

/** Metric names mailtrail exports (histograms also as _bucket, _sum, _count). */
async function exportedNames(): Promise<Set<string>> {
  const metrics = new Metrics(new EventBus<RelayEvents>(() => undefined), { upstreams: ['x'], sessionsActive: () => 0, processMetrics: false });
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}

function mentionedMetrics(text: string): string[] {
  return [...new Set([...text.matchAll(/\bmailtrail_[a-z_]+/g)].map((m) => m[0]))];
}

describe('the Prometheus rules in deploy/', () => {
  it('pass promtool check rules', async (ctx) => {
    const result = await promtool(['check', 'rules', RULES]);
    if (result === null) return ctx.skip('promtool is not installed');
    expect(result.code, result.output).toBe(0);
  });

  it('pass their promtool unit tests (the built-in default rules, as PromQL)', async (ctx) => {
    const result = await promtool(['test', 'rules', RULE_TESTS]);
    if (result === null) return ctx.skip('promtool is not installed');
    expect(result.code, result.output).toBe(0);
  });

  it('use only metrics mailtrail exports', async () => {
    const exported = await exportedNames();
    const text = readFileSync(RULES, 'utf8').replace(/^\s*#.*$/gm, '');
    expect(mentionedMetrics(text).filter((n) => !exported.has(n))).toEqual([]);
  });
});

describe('the Grafana dashboard in deploy/', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    uid: string;
    panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('shows relay rate by outcome, failures by class, latency percentiles, upstream up and rejects', () => {
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    expect(exprs).toMatch(/sum by \(outcome\) \(rate\(mailtrail_relay_transactions_total/);
    expect(exprs).toMatch(/sum by \(class\) \(rate\(mailtrail_relay_transactions_total/);
    expect(exprs).toMatch(/histogram_quantile\(0\.95, sum by \(le\) \(rate\(mailtrail_relay_duration_seconds_bucket/);
    expect(exprs).toMatch(/mailtrail_upstream_up/);
    expect(exprs).toMatch(/mailtrail_client_rejects_total/);
  });

  it('queries only metrics mailtrail exports, through the data source variable', async () => {
    const exported = await exportedNames();
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.flatMap(mentionedMetrics).filter((n) => !exported.has(n))).toEqual([]);
    expect(panels.filter((p) => p.datasource?.uid !== '${datasource}').map((p) => p.title)).toEqual([]);
  });
});

describe('the compose file in deploy/', () => {
  const compose = YAML.parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8')) as {
    services: Record<string, { volumes?: string[]; ports?: string[]; build?: { context: string; dockerfile?: string } }>;
  };

  it('runs mailtrail, Prometheus and Grafana', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['mailtrail', 'prometheus', 'grafana']));
  });

  it('mounts only files that exist and builds from a Dockerfile that exists', () => {
    for (const service of Object.values(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('.')) expect(existsSync(resolve(deploy, source)), source).toBe(true);
      }
      if (service.build) expect(existsSync(resolve(deploy, service.build.context, service.build.dockerfile ?? 'Dockerfile'))).toBe(true);
    }
  });

  it('publishes every port on loopback only', () => {
    const ports = Object.values(compose.services).flatMap((s) => s.ports ?? []);
    expect(ports.filter((p) => !p.startsWith('127.0.0.1:'))).toEqual([]);
  });

  it('gives mailtrail a configuration that loads', () => {
    const config = loadConfig({ file: join(deploy, 'mailtrail', 'mailtrail.yaml'), env: {}, cwd: root });
    expect(config.http).toMatchObject({ host: '0.0.0.0', port: 8025 });
    expect(config.upstreams[0]).toMatchObject({ host: 'mailpit', port: 1025, tls: { mode: 'none' } });
  });
});

describe('the trail shippers in deploy/ (Vector, ClickHouse; rsyslog runs for real in test/interop)', () => {
  const vectorFiles = ['mailtrail-loki.yaml', 'mailtrail-clickhouse.yaml'];
  const schema = JSON.parse(readFileSync(join(root, 'docs', 'audit-record.schema.json'), 'utf8')) as JsonSchemaNode & { $defs: Record<string, JsonSchemaNode> };
  /** `*` in a file glob, as Vector and rsyslog take it (the only wildcard these configs use). */
  const globMatches = (glob: string, path: string) => new RegExp(`^${glob.split('*').map(escapeRegExp).join('[^/]*')}$`).test(path);
  /** The trail's names, with built-in rotation, logrotate's dateext, and workers. */
  const TRAIL = '/var/log/mailtrail/audit.log';
  const named = [TRAIL, `${TRAIL}.w1`, `${TRAIL}.w12`, `${TRAIL}.2026-11-25T101500.000Z`, `${TRAIL}-20261125-1764064800`];
  const compressed = [`${TRAIL}.2026-11-25T101500.000Z.gz`, `${TRAIL}-20261124-1763978400.gz`, `${TRAIL}.w1.2026-11-25T101500.000Z.gz.partial`];

  /** Whether `path` (record.a.b) names a field some record type documents. */
  function documented(path: string[]): boolean {
    const walk = (node: JsonSchemaNode | undefined, rest: string[]): boolean => {
      if (node === undefined) return false;
      const resolved = node.$ref ? schema.$defs[node.$ref.replace('#/$defs/', '')] : node;
      if (rest.length === 0) return true;
      const branches = [resolved, ...(resolved?.anyOf ?? []), ...(resolved?.oneOf ?? [])].filter((b): b is JsonSchemaNode => b !== undefined);
      return branches.some((b) => (b.$ref ? walk(b, rest) : walk(b.properties?.[rest[0]!], rest.slice(1))));
    };
    return ['relay', 'reject', 'session', 'alert', 'checkpoint'].some((t) => walk(schema.$defs[t], path));
  }

  it.each(vectorFiles)('vector/%s reads every file of the trail but compressed rotations (read before they were compressed)', (file) => {
    const config = YAML.parse(readFileSync(join(deploy, 'vector', file), 'utf8')) as {
      sources: Record<string, { type: string; include: string[]; exclude: string[] }>;
    };
    const source = config.sources.mailtrail_trail!;
    expect(source.type).toBe('file');
    const read = (p: string) => source.include.some((g) => globMatches(g, p)) && !source.exclude.some((g) => globMatches(g, p));
    for (const p of named) expect(read(p), p).toBe(true);
    for (const p of compressed) expect(read(p), p).toBe(false);
  });

  it.each(vectorFiles)('vector/%s uses only fields the audit record documents', (file) => {
    const text = readFileSync(join(deploy, 'vector', file), 'utf8');
    const fields = [...text.matchAll(/record\.([A-Za-z0-9.]+)/g)].map((m) => m[1]!.split('.'));
    expect(fields.length).toBeGreaterThan(3);
    for (const path of fields) expect(documented(path), path.join('.')).toBe(true);
  });

  it('fills exactly the columns of the ClickHouse table, in its order', () => {
    const config = YAML.parse(readFileSync(join(deploy, 'vector', vectorFiles[1]!), 'utf8')) as { transforms: { mailtrail_rows: { source: string } } };
    const row = [...config.transforms.mailtrail_rows.source.matchAll(/^\s+"([a-z_0-9]+)":/gm)].map((m) => m[1]!);
    const ddl = readFileSync(join(deploy, 'clickhouse', 'mailtrail.sql'), 'utf8');
    const columns = [...ddl.matchAll(/^ {4}([a-z_0-9]+)\s+\S/gm)].map((m) => m[1]!);
    expect(row).toEqual(columns);
    expect(ddl).toMatch(/ORDER BY \(instance, id\)/);
  });

  it('rsyslog reads the same files and keys each document by the record id', () => {
    const conf = readFileSync(join(deploy, 'rsyslog', 'mailtrail-ship.conf'), 'utf8');
    const file = /File="([^"]+)"/.exec(conf)![1]!;
    for (const p of named) expect(globMatches(file, p), p).toBe(true);
    for (const m of conf.matchAll(/%\$!([A-Za-z.]+)/g)) expect(documented(m[1]!.split('.')), m[1]).toBe(true);
    expect(conf).toMatch(/bulkid="mailtrail-id" dynbulkid="on"/);
  });
});

interface JsonSchemaNode {
  $ref?: string;
  properties?: Record<string, JsonSchemaNode>;
  anyOf?: JsonSchemaNode[];
  oneOf?: JsonSchemaNode[];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
