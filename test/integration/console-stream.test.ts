/**
 * The live stream's back-pressure and heartbeats (docs/console.md, "Live stream"), on a real HTTP
 * server and a real socket: a client that stops reading makes the server drop events (bounded
 * memory) and tells it how many once it reads again.
 */
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LiveStream } from '../../src/console/live-stream.js';
import { EventBus } from '../../src/event-bus.js';
import type { RelayBus, RelayEvents } from '../../src/observe/relay-events.js';
import { relay } from '../helpers/trail-fixtures.js';

interface Running {
  readonly bus: RelayBus;
  readonly stream: LiveStream;
  readonly server: Server;
  readonly port: number;
}

let running: Running | null = null;

async function start(options: ConstructorParameters<typeof LiveStream>[1]): Promise<Running> {
  const bus: RelayBus = new EventBus<RelayEvents>((err) => {
    throw err;
  });
  const stream = new LiveStream(bus, options);
  const server = createServer((_req, res) => void stream.open(res, 'ops', null, () => true));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  running = { bus, stream, server, port };
  return running;
}

/** A raw client: sends the request, then reads only when told to. */
async function rawClient(port: number): Promise<{ socket: Socket; text: () => string }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  socket.write('GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  return { socket, text: () => text };
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(async () => {
  if (!running) return;
  running.stream.close();
  running.server.closeAllConnections();
  await new Promise((resolve) => running!.server.close(resolve));
  running = null;
});

describe('the live stream', () => {
  it('sends a heartbeat comment while nothing happens', async () => {
    const { port } = await start({ heartbeatMs: 50, bufferLimit: 64 * 1024, stallMs: 60_000, maxStreams: 10, maxPerUser: 10 });
    const client = await rawClient(port);
    await until(() => client.text().includes(': heartbeat'), 5_000);
    client.socket.destroy();
  });

  it('drops events for a client that does not read, keeps its buffer bounded, and tells it how many it missed', async () => {
    const { bus, stream, port } = await start({ heartbeatMs: 60_000, bufferLimit: 16 * 1024, stallMs: 60_000, maxStreams: 10, maxPerUser: 10 });
    const client = await rawClient(port);
    await until(() => client.text().includes('mailtrail live stream'), 5_000);
    client.socket.pause();
    // Each event is about 1 KiB; 20,000 of them (20 MiB) are far beyond what the sockets can hold.
    const subject = 'x'.repeat(600);
    for (let i = 0; i < 20_000; i++) {
      bus.publish('relay', relay({ id: `01M8830FT48G96HGA5DQ${String(i).padStart(6, '0')}`, message: { ...relay().message, subject } }));
    }
    expect(stream.size).toBe(1);
    client.socket.resume();
    // One more event once it has drained: the server first says how many were dropped.
    await until(() => client.text().length > 0 && !client.socket.isPaused(), 1_000);
    await new Promise((r) => setTimeout(r, 500));
    bus.publish('relay', relay({ id: '01M8830FT48G96HGA5DQZZZZZZ' }));
    await until(() => client.text().includes('01M8830FT48G96HGA5DQZZZZZZ'), 10_000);
    const dropped = /event: dropped\ndata: \{"count":(\d+)\}/.exec(client.text());
    expect(dropped).not.toBeNull();
    const delivered = (client.text().match(/event: transaction/g) ?? []).length;
    expect(Number(dropped![1]) + delivered).toBe(20_001);
    expect(delivered).toBeLessThan(20_001);
    client.socket.destroy();
  });

  it('refuses a stream beyond the limit of open streams', async () => {
    const { port } = await start({ heartbeatMs: 60_000, bufferLimit: 64 * 1024, stallMs: 60_000, maxStreams: 1, maxPerUser: 1 });
    const first = await rawClient(port);
    await until(() => first.text().includes('200 OK'), 5_000);
    const second = await rawClient(port);
    // open() returned false and wrote nothing: the console answers 503 too_many_streams (console-api.ts).
    await new Promise((r) => setTimeout(r, 300));
    expect(second.text()).toBe('');
    first.socket.destroy();
    second.socket.destroy();
  });
});
