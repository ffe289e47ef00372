import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ReadinessReport } from '../../src/observe/readiness.js';
import { parseExposition } from '../helpers/exposition.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const INTERVAL_MS = 300;
/** Slack for a loaded two-core machine; the measured figure is printed. */
const SLACK_MS = 2_000;

async function readyz(relay: RunningRelay): Promise<{ status: number; body: ReadinessReport }> {
  const res = await fetch(`${relay.httpUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as ReadinessReport };
}

/** Polls /readyz until it answers `status`; resolves with the time it took. */
async function untilStatus(relay: RunningRelay, status: number, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if ((await readyz(relay)).status === status) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`/readyz did not answer ${status} within ${timeoutMs} ms`);
}

describe('readiness', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({
      upstreams: [{ name: 'primary', port: upstream.port, probe: { enabled: true, interval: INTERVAL_MS, timeout: 1_000 } }],
      http: { port: 0 },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });
  afterEach(async () => {
    await upstream.resetFaults();
  });

  it('is ready once the listeners are up and the upstream passed its probe', async () => {
    await untilStatus(relay, 200, 5_000);
    const { body } = await readyz(relay);
    expect(body).toMatchObject({ ready: true, reasons: [], listeners: [{ host: '127.0.0.1', port: relay.port }] });
    expect(body.upstreams).toEqual([
      expect.objectContaining({ name: 'primary', probe: expect.objectContaining({ enabled: true, ok: true, class: null }) }),
    ]);
  });

  it('turns not ready within one probe interval after the upstream stops, with the failure class, and back', async () => {
    await untilStatus(relay, 200, 5_000);
    await upstream.refuse();
    const down = await untilStatus(relay, 503, INTERVAL_MS + SLACK_MS);
    const { body } = await readyz(relay);
    expect(body.ready).toBe(false);
    expect(body.reasons).toEqual(['no upstream passed its last probe']);
    expect(body.upstreams[0]!.probe).toMatchObject({ ok: false, class: 'connect', error: { cause: 'ECONNREFUSED' } });
    const metrics = parseExposition(await (await fetch(`${relay.httpUrl}/metrics`)).text());
    expect(metrics.value('mailtrail_upstream_up', { upstream: 'primary' })).toBe(0);
    expect(metrics.value('mailtrail_upstream_probe_failures_total', { upstream: 'primary', class: 'connect' })).toBeGreaterThan(0);

    await upstream.accept();
    const up = await untilStatus(relay, 200, INTERVAL_MS + SLACK_MS);
    console.log(`readiness: not ready ${down} ms after the upstream stopped, ready again ${up} ms after it came back (interval ${INTERVAL_MS} ms)`);
  });

  it('probes without ever sending a message', async () => {
    upstream.clearRecords();
    await waitFor(() => upstream.connections >= 3, 5_000);
    expect(upstream.transactions).toBe(0);
    expect(upstream.allData).toHaveLength(0);
  });
});

describe('readiness with wrong upstream credentials', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'right' } });
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, auth: { user: 'relay', pass: 'wrong' }, probe: { enabled: true, interval: INTERVAL_MS, timeout: 1_000 } }],
      clients: { allowInsecureAuth: true },
      http: { port: 0 },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('is not ready and shows class upstream_auth with the upstream reply', async () => {
    await waitFor(() => upstream.connections >= 1, 5_000);
    await untilStatus(relay, 503, 5_000);
    const start = Date.now();
    let body: ReadinessReport | null = null;
    while (Date.now() - start < 5_000) {
      body = (await readyz(relay)).body;
      if (body.upstreams[0]!.probe.ok === false) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(body!.upstreams[0]!.probe).toMatchObject({ ok: false, class: 'upstream_auth', reply: { code: 535 } });
  });
});
