/**
 * The config file's schema: every key, its type, its default. This is the single source of truth for
 * defaults (docs/config.md documents the same keys and a test keeps the two in step). Each top-level
 * section has its own file in sections/ (schema, loaded type, normalisation); this file puts them
 * together, with the few top-level keys that are not sections.
 *
 * `validateConfig` applies the schema to an already env-interpolated object and normalises the result
 * into the `Config` shape (URL split into host/port/credentials, relative paths resolved, every
 * optional value made explicit) and deep-freezes it.
 */
import { hostname as osHostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { issueMessage, problemsFromIssues, type ConfigProblem } from './config-error.js';
import { ALWAYS, fromNumericString, hostName, path } from './fields.js';
import type { Carries, Expect } from './loaded.js';
import { alertsSection, toAlerts } from './sections/alerts.js';
import { auditSection, toAudit } from './sections/audit.js';
import { clientsSection, toClients } from './sections/clients.js';
import { consoleConsistency, consoleSection, toConsole } from './sections/console.js';
import { httpSection, toHttp } from './sections/http.js';
import { instanceSection, toInstance } from './sections/instance.js';
import { limitsSection, toLimits } from './sections/limits.js';
import { listenSection } from './sections/listen.js';
import { logSection } from './sections/log.js';
import { routesConsistency, routesSection, toRoute } from './sections/routes.js';
import { spoolSection, toSpool } from './sections/spool.js';
import { stateSection } from './sections/state.js';
import { timeoutsSection, toTimeouts } from './sections/timeouts.js';
import { tlsSection, toListenerTls } from './sections/tls.js';
import { toUpstream, upstreamsSection } from './sections/upstreams.js';
import { workersSection } from './sections/workers.js';
import { workersProblem } from './local-limits.js';
import { authFileProblems } from './upstream-auth.js';
import type { Config } from './types.js';

const dataDir = path().default('./data');

/** Key order is the order problems are reported in. */
export const configSchema = z
  .strictObject({
    listen: listenSection,
    tls: tlsSection,
    clients: clientsSection,
    limits: limitsSection,
    timeouts: timeoutsSection,
    upstreams: upstreamsSection,
    routes: routesSection,
    audit: auditSection,
    spool: spoolSection,
    http: httpSection,
    console: consoleSection,
    alerts: alertsSection,
    log: logSection,
    instance: instanceSection,
    workers: workersSection,
    state: stateSection,
    /** Name announced in the greeting and EHLO reply; the machine's host name when absent. */
    hostname: hostName().optional(),
    dataDir,
    unknownOutcomeReply: z.preprocess(fromNumericString, z.literal([451, 250])).default(451),
  })
  .superRefine(routesConsistency, ALWAYS)
  .superRefine(consoleConsistency, ALWAYS);

type ParsedConfig = z.output<typeof configSchema>;
// Does not compile when `Config` (types.ts) lacks a key of the schema or holds it as another type (loaded.ts).
type _ConfigFitsSchema = Expect<
  Carries<
    Config,
    ParsedConfig,
    'limits' | 'timeouts' | 'upstreams' | 'audit' | 'spool' | 'http' | 'console' | 'alerts' | 'hostname' | 'unknownOutcomeReply' | 'instance'
  >
>;

// ---------------------------------------------------------------------------------------------------
// Validation and normalisation

export type ValidationResult = { readonly ok: true; readonly config: Config } | { readonly ok: false; readonly problems: ConfigProblem[] };

/**
 * Applies the schema to `raw` (already env-interpolated) and, if it passes, normalises it; relative
 * paths resolve against `baseDir`. The config returned is deep-frozen.
 */
export function validateConfig(raw: unknown, baseDir: string): ValidationResult {
  const result = configSchema.safeParse(raw, { error: issueMessage });
  if (!result.success) return { ok: false, problems: problemsFromIssues(result.error.issues) };
  const config = toConfig(result.data, baseDir);
  // The files an OAuth2 login names (service account key, certificate): only now are their paths resolved.
  const fileProblems = authFileProblems(config.upstreams.map((u) => u.auth));
  if (fileProblems.length > 0) return { ok: false, problems: fileProblems };
  // Needs the whole config (which limits are on), so it runs on the loaded values.
  const workers = workersProblem(config, config.workers.count);
  if (workers !== null) return { ok: false, problems: [{ path: 'workers.count', message: workers }] };
  return { ok: true, config: deepFreeze(config) };
}

/** Where the trail is and how it was written: what the trail's readers need of a configuration. */
export type TrailConfig = Pick<Config, 'audit' | 'dataDir'>;

const trailSection = z.strictObject({ audit: auditSection, dataDir });

/**
 * `{ audit, dataDir }` (already env-interpolated; either may be undefined), checked like the same keys
 * of the full file. The trail's readers use it, so a copy of the operator's file whose other keys
 * need secrets (upstream passwords, webhook secrets) still tells them where the trail is.
 */
export function validateTrailSection(
  raw: unknown,
  baseDir: string,
): { readonly ok: true; readonly config: TrailConfig } | { readonly ok: false; readonly problems: ConfigProblem[] } {
  const result = trailSection.safeParse(raw, { error: issueMessage });
  if (!result.success) return { ok: false, problems: problemsFromIssues(result.error.issues) };
  const dataDir = resolve(baseDir, result.data.dataDir);
  return { ok: true, config: deepFreeze({ audit: toAudit(result.data.audit, baseDir, dataDir), dataDir }) };
}

/** Where the queue's tools look: the data folder (its control socket) and the spool folder. */
export interface QueueToolConfig {
  readonly dataDir: string;
  readonly spoolDir: string;
}

const queueSection = z.strictObject({ dataDir, spool: z.strictObject({ dir: path().optional() }).prefault({}) });

/**
 * `{ dataDir, spool: { dir } }` (already env-interpolated), checked like the same keys of the full
 * file, for `mailtrail queue`: like the trail's readers, it needs no secret of the file.
 */
export function validateQueueSection(
  raw: unknown,
  baseDir: string,
): { readonly ok: true; readonly config: QueueToolConfig } | { readonly ok: false; readonly problems: ConfigProblem[] } {
  const result = queueSection.safeParse(raw, { error: issueMessage });
  if (!result.success) return { ok: false, problems: problemsFromIssues(result.error.issues) };
  const dataDir = resolve(baseDir, result.data.dataDir);
  const spoolDir = result.data.spool.dir === undefined ? resolve(dataDir, 'spool') : resolve(baseDir, result.data.spool.dir);
  return { ok: true, config: deepFreeze({ dataDir, spoolDir }) };
}

function toConfig(parsed: ParsedConfig, baseDir: string): Config {
  const dataDir = resolve(baseDir, parsed.dataDir);
  const hostname = parsed.hostname ?? osHostname();
  return {
    listen: parsed.listen,
    tls: toListenerTls(parsed.tls, baseDir),
    clients: toClients(parsed.clients),
    limits: toLimits(parsed.limits, parsed.clients.networks),
    timeouts: toTimeouts(parsed.timeouts),
    upstreams: parsed.upstreams.map((u) => toUpstream(u, baseDir)),
    routes: parsed.routes.map(toRoute),
    audit: toAudit(parsed.audit, baseDir, dataDir),
    spool: toSpool(parsed.spool, baseDir, dataDir),
    http: toHttp(parsed.http),
    console: toConsole(parsed.console),
    alerts: toAlerts(parsed.alerts, baseDir),
    log: parsed.log,
    instance: toInstance(parsed.instance, parsed.listen[0]!.port),
    workers: parsed.workers,
    state: parsed.state,
    hostname,
    dataDir,
    localSink: null,
    unknownOutcomeReply: { code: parsed.unknownOutcomeReply },
  };
}

/** Freezes `value` and everything reachable from it, so no part of the running app can alter config. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
