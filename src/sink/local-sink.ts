import { randomBytes } from 'node:crypto';
import { mkdir, readdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import type { Readable } from 'node:stream';
import type { Logger } from '../logger.js';
import { removeGreetingDelay } from '../listener/fast-greeting.js';

/**
 * The embedded default's upstream: an in-process SMTP server on loopback that accepts everything
 * and keeps the last `keep` messages as .eml files, so a new user sees the whole path working
 * (client → mailtrail → "provider") before configuring a real provider.
 */
export class LocalSink {
  readonly dir: string;
  #keep: number;
  #server: SMTPServer;
  #port = 0;
  #log: Logger;
  #writes: Promise<void> = Promise.resolve();

  constructor(dir: string, keep: number, log: Logger) {
    this.dir = dir;
    this.#keep = keep;
    this.#log = log;
    this.#server = new SMTPServer({
      logger: false,
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      banner: 'mailtrail local sink',
      closeTimeout: 1000,
      onData: (stream, _session, cb) => {
        this.#store(stream).then(
          (id) => cb(null, `Ok: queued as ${id}`),
          (err: Error) => cb(Object.assign(err, { responseCode: 451 })),
        );
      },
    });
    removeGreetingDelay(this.#server);
    this.#server.on('error', (err) => this.#log.debug({ err }, 'local sink connection error'));
  }

  get port(): number {
    return this.#port;
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve()));
    const addr = this.#server.server.address();
    this.#port = typeof addr === 'object' && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.#writes;
  }

  async #store(stream: Readable): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const id = `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`.toUpperCase();
    await writeFile(join(this.dir, `${id}.eml`), Buffer.concat(chunks), { mode: 0o600 });
    // Pruning is serialised so two concurrent messages never race over the same old file.
    this.#writes = this.#writes.then(() => this.#prune()).catch((err: Error) => this.#log.warn({ err }, 'local sink prune failed'));
    return id;
  }

  async #prune(): Promise<void> {
    const files = (await readdir(this.dir)).filter((f) => f.endsWith('.eml')).sort();
    const excess = files.length - this.#keep;
    for (const f of files.slice(0, Math.max(0, excess))) await unlink(join(this.dir, f)).catch(() => undefined);
  }
}
