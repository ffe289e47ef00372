/**
 * Fills a spool folder with `n` queued messages through the store's own API (SpoolStore.accept, 64
 * at a time), each marked recorded as the transaction does once its acceptance record is written, so
 * a relay started on it writes no `recovered` records. The fsyncs are off for the filling only, which
 * is never what a bench measures. Resolves with the time it took (ms).
 */
import { join } from 'node:path';
import { ROOT } from './mailtrail-process.mjs';

export async function fillSpool(dir, n, body, client = { ip: '127.0.0.1', user: null }) {
  const { SpoolStore } = await import(join(ROOT, 'dist', 'spool', 'spool-store.js'));
  const { IdGenerator } = await import(join(ROOT, 'dist', 'ids.js'));
  const { createLogger } = await import(join(ROOT, 'dist', 'logger.js'));
  const { store } = await SpoolStore.open({ dir, minFreeSpace: 0, log: createLogger('silent'), fileOps: { fsync: async () => undefined } });
  const ids = new IdGenerator();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const raw = body(i);
      const entry = await store.accept({
        id: ids.next(),
        acceptance: { mode: 'spool', reason: 'spool mode' },
        from: 'app@example.com',
        to: [`user${i}@example.org`],
        use8BitMime: false,
        message: { size: raw.length, sha256: '0'.repeat(64), messageId: `<r${i}@example.com>`, headerFrom: 'App <app@example.com>' },
        client,
        body: raw,
      });
      await store.markRecorded(entry.id);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const took = performance.now() - t0;
  await store.close();
  return took;
}
