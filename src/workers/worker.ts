/**
 * One worker process of `mailtrail serve --workers N` (docs/fleet.md): the whole relay (App) on the
 * listeners it shares with its siblings, its own trail, chain and data folder (worker-config.ts).
 * It binds no HTTP endpoint: the supervisor serves one for all and asks each worker for its part.
 * It stops gracefully when the supervisor says so, or on its own SIGTERM / SIGINT (a terminal's
 * Ctrl-C reaches every process of the group).
 */
import { App, StartError, type RunningInfo } from '../app.js';
import type { Config } from '../config/types.js';
import { createLogger } from '../logger.js';
import { isMessage, type FromWorker, type Query, type ToWorker } from './worker-messages.js';

export async function runWorker(config: Config): Promise<number> {
  const log = createLogger(config.log.level, 2, config.instance.id);
  const app = new App(config, log, { httpServer: false });
  const send = (message: FromWorker): void => {
    process.send?.(message);
  };
  let info: RunningInfo;
  try {
    info = await app.start();
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    send({ t: 'start-failed', message: err.message });
    await app.stop().catch(() => undefined);
    return 1;
  }
  log.info({ listeners: info.listeners, audit: info.auditFile }, 'worker started');
  send({ t: 'ready', info });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'worker shutting down: finishing transactions in flight');
      app.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'worker shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('message', (message: unknown) => {
      if (!isMessage<ToWorker>(message)) return;
      if (message.t === 'stop') stop('asked by the supervisor');
      else if (message.t === 'reopen') reopen(app, log, info.auditFile);
      else if (message.t === 'query') {
        answer(app, message.query).then(
          (value) => send({ t: 'answer', id: message.id, value }),
          (err: unknown) => {
            log.error({ err }, 'worker could not answer the supervisor');
            send({ t: 'answer', id: message.id, value: null });
          },
        );
      }
    });
    // The supervisor gone (killed): nothing would stop this worker any more.
    process.once('disconnect', () => stop('the supervisor is gone'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => reopen(app, log, info.auditFile));
  });
}

function reopen(app: App, log: ReturnType<typeof createLogger>, file: string): void {
  app.reopenAudit();
  log.info({ file }, 'audit file reopened');
}

/** This worker's part of the HTTP endpoint; null where it has none (`http` off). */
async function answer(app: App, query: Query): Promise<unknown> {
  const sources = app.httpSources;
  if (query.what === 'metrics') return app.metricsJson();
  if (sources === null) return null;
  switch (query.what) {
    case 'readiness':
      return sources.readiness();
    case 'errors':
      return sources.errors();
    case 'transaction':
      return (await sources.transaction(query.key)) ?? null;
    case 'byMessageId':
      return sources.byMessageId(query.key);
  }
}
