/**
 * What `mailtrail serve` says once it is up. Two readers, two streams: the banner (plain text, on
 * stdout) is for a person, and the JSON log (pino, always on stderr) is for machines. The start-up
 * warnings belong to both, and each reader sees each warning once, after the banner:
 *
 * - The banner always lists them, as `warning` lines.
 * - The JSON log gets them too, unless stdout and stderr are both terminals: then one person reads
 *   both streams on one screen, and the banner has said it already.
 * - With the trail on stdout (`audit.file: "-"`), stdout is the machines' and the banner goes to
 *   stderr when that is a terminal, else nowhere (the log's `mailtrail started` line has the facts).
 *
 * Documented in docs/observability.md, "Start-up output".
 */
import type { RunningInfo } from './app.js';
import type { Config } from './config/types.js';
import type { Logger } from './logger.js';

export interface StartupStreams {
  readonly stdout: NodeJS.WritableStream & { readonly isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

export interface StartupOutputPlan {
  /** Where the banner goes, or null for nowhere. */
  readonly banner: 'stdout' | 'stderr' | null;
  /** Whether the start-up warnings are also logged as JSON lines. */
  readonly logWarnings: boolean;
}

export function startupOutputPlan(terminals: { stdout: boolean; stderr: boolean }, trailOnStdout: boolean): StartupOutputPlan {
  if (trailOnStdout) {
    return terminals.stderr ? { banner: 'stderr', logWarnings: false } : { banner: null, logWarnings: true };
  }
  return { banner: 'stdout', logWarnings: !(terminals.stdout && terminals.stderr) };
}

/** The banner, then the log lines; in that order, each warning once per reader. */
export function announceStart(info: RunningInfo, config: Config, streams: StartupStreams, log: Logger): void {
  const plan = startupOutputPlan({ stdout: streams.stdout.isTTY === true, stderr: streams.stderr.isTTY === true }, info.auditFile === '-');
  if (plan.banner) streams[plan.banner].write(startupBanner(info, config));
  log.info(
    {
      listeners: info.listeners,
      upstreams: info.upstreams,
      audit: info.auditFile,
      http: info.http,
      warnings: info.warnings.length,
      workers: info.workers?.count ?? 1,
    },
    'mailtrail started',
  );
  if (plan.logWarnings) {
    for (const w of info.warnings) log.warn({ code: w.code, ...w.fields }, w.message);
  }
}

/** How the console is logged in to (docs/console.md, "Who may log in"). */
function consoleLogin(config: Config): string {
  if (config.console.users.length > 0) return `login: ${config.console.users.length} console user(s)`;
  if (config.http?.token != null) return 'login: the HTTP token';
  return 'no login: loopback only';
}

export function startupBanner(info: RunningInfo, config: Config): string {
  const lines = ['mailtrail is running', `  instance  ${config.instance.id}`];
  if (info.workers) {
    const { count, instances } = info.workers;
    lines.push(`  workers   ${count} processes sharing the listeners: instances ${instances[0]} … ${instances[instances.length - 1]}`);
  }
  for (const l of info.listeners) {
    const mode = l.mode === 'passthrough' ? '' : `, ${l.mode} mode`;
    lines.push(`  SMTP      ${l.host}:${l.port} ${l.implicitTls ? `(implicit TLS${mode})` : `(STARTTLS offered${mode})`}`);
  }
  for (const u of info.upstreams) lines.push(`  upstream  ${u.name} → ${u.host}:${u.port} (${u.tls})`);
  if (info.sinkDir) lines.push(`  sink      built-in local sink; messages kept as .eml in ${info.sinkDir}`);
  if (info.spool) lines.push(`  spool     ${info.spool.dir} (${info.spool.entries} message(s) queued)`);
  lines.push(`  audit     ${info.auditFile === '-' ? 'stdout' : info.auditFile}`);
  if (info.http) {
    const base = `http://${info.http.host.includes(':') ? `[${info.http.host}]` : info.http.host}:${info.http.port}`;
    lines.push(`  http      ${base}  (/metrics /healthz /readyz /api/transactions /api/errors)`);
    if (config.console.enabled) lines.push(`  console   ${base}/  (${consoleLogin(config)})`);
  }
  if (config.state.redis !== null && info.sharedState) {
    const where = `Redis at ${new URL(config.state.redis).host} as instance ${config.instance.id}`;
    const degraded = info.sharedState.mode === 'degraded' ? ` (unreachable: ${info.sharedState.reason ?? 'unknown'}; relaying on local shares meanwhile)` : '';
    lines.push(`  state     shared through ${where}${degraded}`);
  }
  lines.push(`  relaying  without AUTH from ${config.clients.networks.join(', ') || '(no networks)'}; ${config.clients.users.length} AUTH user(s)`);
  for (const w of info.warnings) lines.push(`  warning   ${w.message}`);
  if (info.sinkDir)
    lines.push('  try       swaks --server ' + `${info.listeners[0]?.host}:${info.listeners[0]?.port}` + ' --from app@example.com --to you@example.org');
  return lines.join('\n') + '\n';
}
