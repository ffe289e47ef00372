/**
 * The fault soak (soak/run-soak.ts) in its short form: SOAK_SECONDS (default 15) of traffic through a
 * mailtrail child process while the upstream fails at random in every way docs/failures.md lists, with
 * one SIGTERM restart and one SIGKILL in the middle. `npm run soak` runs the long form.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { everyFault } from '../../soak/fault-plan.js';
import { ensureBuilt } from '../../soak/mailtrail-child.js';
import { runSoak, type SoakReport } from '../../soak/run-soak.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 15);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 16);

describe(`fault soak (${SECONDS} s, ${CLIENTS} clients, SIGTERM and SIGKILL restarts)`, () => {
  let report: SoakReport;

  beforeAll(
    async () => {
      await ensureBuilt();
      report = await runSoak({ seconds: SECONDS, clients: CLIENTS, log: (line) => process.stdout.write(`[soak] ${line}\n`) });
      process.stdout.write(`\n${report.text}\n\n`);
    },
    SECONDS * 1000 + 120_000,
  );

  it('loses no message a client was told was accepted', () => {
    expect(report.accounting!.lost).toBe(0);
  });

  it('accounts for every message: client reply, upstream copy and relay record agree', () => {
    expect(report.accounting!.problems).toEqual([]);
    expect(report.accounting!.unaccounted).toBe(0);
  });

  it('carried real traffic through every restart', () => {
    expect(report.accounting!.sent).toBeGreaterThan(SECONDS * 5);
    expect(report.accounting!.accepted).toBeGreaterThan(0);
    expect(report.restarts.map((r) => r.signal)).toEqual(['SIGTERM', 'SIGKILL', 'SIGTERM']);
    expect(report.restarts[0]!.exit).toBe('exit 0');
    expect(report.restarts[2]!.exit).toBe('exit 0');
  });

  it('met every kind of upstream fault', () => {
    const met = Object.keys(report.faults);
    expect(everyFault().filter((f) => !met.includes(f))).toEqual([]);
    expect(met).toContain('refused connections (window): refuse');
    expect(met).toContain('all upstream connections dropped: drop');
  });

  it('leaves a trail that verifies, when this build can verify', () => {
    if (report.verify === null) return;
    expect(report.verify.output).toBeTruthy();
    expect(report.verify.ok).toBe(true);
  });
});

const SPOOL_SECONDS = Number(process.env.SOAK_SPOOL_SECONDS ?? 8);

describe(`fault soak in spool mode (${SPOOL_SECONDS} s, ${CLIENTS} clients, SIGTERM and SIGKILL restarts, then the queue drains)`, () => {
  let report: SoakReport;

  beforeAll(
    async () => {
      await ensureBuilt();
      report = await runSoak({
        seconds: SPOOL_SECONDS,
        clients: CLIENTS,
        mode: 'spool',
        drainSeconds: 60,
        log: (line) => process.stdout.write(`[soak spool] ${line}\n`),
      });
      process.stdout.write(`\n${report.text}\n\n`);
    },
    SPOOL_SECONDS * 1000 + 180_000,
  );

  it('loses no message a client was told was queued', () => {
    expect(report.spool!.lost).toBe(0);
    expect(report.spool!.stillQueued).toBe(0);
  });

  it('delivers every queued message once, or records it as a possible duplicate', () => {
    expect(report.spool!.problems).toEqual([]);
    expect(report.spool!.accepted).toBeGreaterThan(SPOOL_SECONDS * 5);
    expect(report.spool!.delivered).toBeGreaterThan(0);
  });

  it('went through both restarts', () => {
    expect(report.restarts.map((r) => r.signal)).toEqual(['SIGTERM', 'SIGKILL', 'SIGTERM']);
    expect(report.restarts[2]!.exit).toBe('exit 0');
  });

  it('leaves a trail that verifies, when this build can verify', () => {
    if (report.verify === null) return;
    expect(report.verify.ok).toBe(true);
  });
});
