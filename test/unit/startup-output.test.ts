import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { RunningInfo } from '../../src/app.js';
import { embeddedDefault } from '../../src/config/embedded-default.js';
import { createLogger } from '../../src/logger.js';
import type { StartupWarning } from '../../src/observe/startup-warnings.js';
import { announceStart, startupBanner, startupOutputPlan } from '../../src/startup-output.js';

const WARNINGS: StartupWarning[] = [
  { code: 'tls_ephemeral', message: 'no tls.cert / tls.key: STARTTLS uses an ephemeral self-signed certificate', fields: { hostname: 'mailtrail.test' } },
  { code: 'upstream_plaintext', message: 'upstream far (192.0.2.10:25) without TLS', fields: { upstream: 'far' } },
];

function info(over: Partial<RunningInfo> = {}): RunningInfo {
  return {
    listeners: [{ host: '127.0.0.1', port: 2525, implicitTls: false, mode: 'passthrough' }],
    auditFile: '/var/lib/mailtrail/audit.log',
    upstreams: [{ name: 'far', host: '192.0.2.10', port: 25, tls: 'TLS none' }],
    sinkDir: null,
    spool: null,
    http: null,
    warnings: WARNINGS,
    sharedState: null,
    ...over,
  };
}

/** A stream that records what is written to it, and whether it says it is a terminal. */
function stream(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  let text = '';
  const s = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return Object.assign(s, { isTTY, text: () => text });
}

/** What a person or a machine sees of `announceStart` with these terminals. */
function announce(terminals: { stdout: boolean; stderr: boolean }, over: Partial<RunningInfo> = {}) {
  const stdout = stream(terminals.stdout);
  const stderr = stream(terminals.stderr);
  // The JSON log writes to stderr, as createLogger's default (fd 2) does.
  const log = createLogger('info', { write: (line: string) => stderr.write(line) });
  announceStart(info(over), embeddedDefault({}, '/srv/mailtrail'), { stdout, stderr }, log);
  return { stdout: stdout.text(), stderr: stderr.text() };
}

function count(text: string, part: string): number {
  return text.split(part).length - 1;
}

describe('start-up output', () => {
  it('lists each start-up warning in the banner as a warning line', () => {
    const banner = startupBanner(info(), embeddedDefault({}, '/srv/mailtrail'));
    for (const w of WARNINGS) expect(banner).toContain(`\n  warning   ${w.message}\n`);
  });

  it("names the fleet's Redis (without its password) and says when it could not be reached at start-up", () => {
    const base = embeddedDefault({}, '/srv/mailtrail');
    const config = {
      ...base,
      state: { redis: 'redis://:secret@redis.internal:6379/0', prefix: 'mailtrail:', expectedInstances: 3, timeout: 250, leaseTtl: 30_000 },
      instance: { id: 'relay-1' },
    };
    const shared = startupBanner(info({ sharedState: { mode: 'shared', since: 0, reason: null } }), config);
    expect(shared).toContain('  state     shared through Redis at redis.internal:6379 as instance relay-1\n');
    expect(shared).not.toContain('secret');
    const degraded = startupBanner(info({ sharedState: { mode: 'degraded', since: 0, reason: 'connect ECONNREFUSED' } }), config);
    expect(degraded).toContain('as instance relay-1 (unreachable: connect ECONNREFUSED; relaying on local shares meanwhile)');
    expect(startupBanner(info(), base)).not.toContain('  state ');
  });

  it('on a terminal, shows each warning once, in the banner, and logs none of them as JSON', () => {
    const seen = announce({ stdout: true, stderr: true });
    for (const w of WARNINGS) expect(count(seen.stdout + seen.stderr, w.message), w.code).toBe(1);
    expect(seen.stdout).toMatch(/^mailtrail is running\n/);
    expect(seen.stderr).not.toContain('"level":"warn"');
    expect(seen.stderr).toContain('"msg":"mailtrail started"');
  });

  it('with stdout on a terminal and the log in a file, shows the warnings in the banner and logs them as JSON', () => {
    const seen = announce({ stdout: true, stderr: false });
    for (const w of WARNINGS) {
      expect(count(seen.stdout, w.message)).toBe(1);
      expect(count(seen.stderr, `"msg":"${w.message}"`)).toBe(1);
      expect(seen.stderr).toContain(`"code":"${w.code}"`);
    }
  });

  it('without a terminal, writes the banner first, then the log lines with each warning once', () => {
    const seen = announce({ stdout: false, stderr: false });
    expect(seen.stdout).toMatch(/^mailtrail is running\n/);
    const logged = seen.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: string; msg: string; code?: string });
    expect(logged[0]?.msg).toBe('mailtrail started');
    expect(logged.filter((l) => l.level === 'warn').map((l) => l.code)).toEqual(WARNINGS.map((w) => w.code));
  });

  it('keeps stdout to the trail when the trail goes there: the banner goes to a terminal on stderr, else nowhere', () => {
    const person = announce({ stdout: true, stderr: true }, { auditFile: '-' });
    expect(person.stdout).toBe('');
    expect(person.stderr).toMatch(/^mailtrail is running\n/);
    for (const w of WARNINGS) expect(count(person.stderr, w.message)).toBe(1);

    const machine = announce({ stdout: false, stderr: false }, { auditFile: '-' });
    expect(machine.stdout).toBe('');
    expect(machine.stderr).not.toContain('mailtrail is running');
    for (const w of WARNINGS) expect(count(machine.stderr, `"msg":"${w.message}"`)).toBe(1);
  });

  it('plans the output from the terminals alone', () => {
    expect(startupOutputPlan({ stdout: true, stderr: true }, false)).toEqual({ banner: 'stdout', logWarnings: false });
    expect(startupOutputPlan({ stdout: false, stderr: true }, false)).toEqual({ banner: 'stdout', logWarnings: true });
    expect(startupOutputPlan({ stdout: true, stderr: false }, false)).toEqual({ banner: 'stdout', logWarnings: true });
    expect(startupOutputPlan({ stdout: false, stderr: false }, false)).toEqual({ banner: 'stdout', logWarnings: true });
  });
});
