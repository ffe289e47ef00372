import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RelayEvents } from '../../src/observe/relay-events.js';
import type { ReadinessReport } from '../../src/observe/readiness.js';
import { parseExposition } from '../helpers/exposition.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

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

/** Polls /readyz until the first upstream's last probe says `ok`. */
async function untilProbed(relay: RunningRelay, ok: boolean, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while ((await readyz(relay)).body.upstreams[0]?.probe.ok !== ok) {
    if (Date.now() - start > timeoutMs) throw new Error(`no probe with ok ${String(ok)} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
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
    expect(body.upstreams).toEqual([expect.objectContaining({ name: 'primary', probe: expect.objectContaining({ enabled: true, ok: true, class: null }) })]);
  });

  it('says nothing of shared state without `state.redis`: no sharedState detail, no shared-state series', async () => {
    const { body } = await readyz(relay);
    expect(body).toMatchObject({ sharedState: null });
    const metrics = await (await fetch(`${relay.httpUrl!}/metrics`)).text();
    expect(metrics).not.toMatch(/^mailtrail_shared_state_\w+(\{[^}]*\})? /m);
  });

  it('turns not ready within one probe interval after the upstream stops, with the failure class, and back', async () => {
    await untilStatus(relay, 200, 5_000);
    await upstream.refuse();
    const down = await untilStatus(relay, 503, INTERVAL_MS + SLACK_MS);
    const { body } = await readyz(relay);
    expect(body.ready).toBe(false);
    expect(body.reasons).toEqual(['no usable upstream (primary: last probe failed)']);
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
      upstreams: [
        { name: 'provider', port: upstream.port, auth: { user: 'relay', pass: 'wrong' }, probe: { enabled: true, interval: INTERVAL_MS, timeout: 1_000 } },
      ],
      clients: { allowInsecureAuth: true },
      http: { port: 0 },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('is not ready and shows class upstream_auth with the upstream reply', async () => {
    await untilProbed(relay, false, 5_000);
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

describe('readiness and the circuit breaker', () => {
  /** Long enough that no probe runs after the first one while a test lasts. */
  const PROBE_INTERVAL = 60_000;
  const COOLDOWN = 1_000;
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let states: RelayEvents['upstream-state'][0][];

  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await relay.stop();
    await upstream.close();
  });

  async function start(): Promise<void> {
    relay = await startRelay({
      upstreams: [
        {
          name: 'primary',
          port: upstream.port,
          probe: { enabled: true, interval: PROBE_INTERVAL, timeout: 2_000 },
          breaker: { failures: 2, cooldown: COOLDOWN },
        },
      ],
      http: { port: 0 },
    });
    states = [];
    relay.app.bus.subscribe('upstream-state', (e) => states.push(e));
  }
  const send = (id: string) =>
    relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: `<${id}@x>` }), timeoutMs: 15_000 });

  it('turns not ready the moment the breaker of the last usable upstream opens, though its last probe passed', async () => {
    await start();
    await untilStatus(relay, 200, 5_000);
    await upstream.setFaults({ greeting: '421' });
    expect(await send('fail-1')).toMatchObject({ code: 451 });
    expect(await readyz(relay)).toMatchObject({ status: 200 });
    expect(await send('fail-2')).toMatchObject({ code: 451 });
    expect(states.map((s) => s.state)).toEqual(['open']);

    // No probe ran in between: the breaker alone turned it.
    const { status, body } = await readyz(relay);
    expect(status).toBe(503);
    expect(body.reasons).toEqual(['no usable upstream (primary: circuit breaker open)']);
    expect(body.upstreams[0]).toMatchObject({ probe: { ok: true }, breaker: 'open', usable: false });
  });

  it('turns ready the moment a trial closes the breaker, without waiting for the next probe', async () => {
    await upstream.setFaults({ greeting: '421' });
    await start();
    // The first probe fails and counts for the breaker; a message makes it two, and it opens.
    await untilProbed(relay, false, 5_000);
    for (let i = 0; i < 2 && states.at(-1)?.state !== 'open'; i++) expect(await send(`down-${i}`)).toMatchObject({ code: 451 });
    expect(states.at(-1)?.state).toBe('open');

    await upstream.resetFaults();
    await waitFor(() => states.at(-1)?.state === 'half-open', COOLDOWN + 5_000);
    // Half-open says nothing new about the upstream: the failures that opened the breaker still stand.
    const halfOpen = await readyz(relay);
    expect(halfOpen.status).toBe(503);
    expect(halfOpen.body.reasons).toEqual(['no usable upstream (primary: circuit breaker half-open, not yet tried again)']);

    expect(await send('trial')).toMatchObject({ ok: true, code: 250 });
    expect(states.at(-1)?.state).toBe('closed');
    const { status, body } = await readyz(relay);
    expect(status).toBe(200);
    // The last probe still says it failed; the trial since says otherwise, and it is the newer word.
    expect(body.upstreams[0]).toMatchObject({ probe: { ok: false }, breaker: 'closed', usable: true });
  });
});
