import { describe, expect, it } from 'vitest';
import { IdGenerator } from '../../src/ids.js';
import { ConnectionRate, type RefusedWindow } from '../../src/admission/connection-rate.js';

const CLIENT = { ip: '192.0.2.7', port: 40000, helo: null, user: null, tls: null, proxy: null };

function limiter(perMinute: number | null, opts: { exempt?: string[]; maxTracked?: number } = {}) {
  const clock = { t: 0, now: () => clock.t };
  const windows: RefusedWindow[] = [];
  const rate = new ConnectionRate({
    perMinute,
    exempt: opts.exempt ?? ['10.0.0.0/8'],
    maxTracked: opts.maxTracked ?? 100,
    ids: new IdGenerator(),
    onWindowEnd: (w) => windows.push(w),
    clock,
  });
  let n = 0;
  /** Connection n has session id `s<n>`. */
  const connect = (ip: string): Promise<string | null> => {
    const sessionId = `s${++n}`;
    return rate.admit(ip, () => ({ sessionId, client: { ...CLIENT, ip } }));
  };
  return { rate, clock, windows, connect };
}

describe('connection rate per address', () => {
  it('lets a burst of perMinute connections through, then refuses until the bucket refills', async () => {
    const { clock, connect } = limiter(3);
    expect([await connect('192.0.2.7'), await connect('192.0.2.7'), await connect('192.0.2.7')]).toEqual([null, null, null]);
    expect(await connect('192.0.2.7')).toMatch(/^[0-9A-Z]{26}$/);
    clock.t += 20_000; // a third of a minute: one connection's worth
    expect(await connect('192.0.2.7')).toBeNull();
    expect(await connect('192.0.2.7')).not.toBeNull();
  });

  it('counts each address on its own', async () => {
    const { connect } = limiter(1);
    expect(await connect('192.0.2.7')).toBeNull();
    expect(await connect('192.0.2.8')).toBeNull();
    expect(await connect('192.0.2.7')).not.toBeNull();
  });

  it('never counts an exempt network, nor anyone when there is no limit', async () => {
    const exempt = limiter(1);
    for (let i = 0; i < 10; i++) expect(await exempt.connect('10.1.2.3')).toBeNull();
    const none = limiter(null);
    for (let i = 0; i < 10; i++) expect(await none.connect('192.0.2.7')).toBeNull();
  });

  it('gives the connection back when the client logs in', async () => {
    const { rate, connect } = limiter(1);
    expect(await connect('192.0.2.7')).toBeNull();
    rate.refund('192.0.2.7');
    expect(await connect('192.0.2.7')).toBeNull();
    expect(await connect('192.0.2.7')).not.toBeNull();
  });

  it('refuses a window of connections under one id and writes one record for it, with the count, when the window ends', async () => {
    const { rate, windows, connect } = limiter(1);
    await connect('192.0.2.7');
    const ids = [await connect('192.0.2.7'), await connect('192.0.2.7'), await connect('192.0.2.7')];
    expect(new Set(ids).size).toBe(1);
    expect(windows).toEqual([]);
    rate.flush();
    expect(windows).toEqual([{ id: ids[0], first: { sessionId: 's2', client: { ...CLIENT, ip: '192.0.2.7' } }, refused: 3 }]);
    rate.flush();
    expect(windows).toHaveLength(1);
  });

  it('keeps at most maxTracked windows open, ending the oldest first', async () => {
    const { windows, connect } = limiter(1, { maxTracked: 2 });
    for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) {
      await connect(ip);
      await connect(ip);
    }
    expect(windows.map((w) => w.first.client.ip)).toEqual(['192.0.2.1']);
  });
});
