/**
 * The floor under mailtrail, for the bench's reference rows: a bare smtp-server (the library mailtrail
 * is built on) that accepts every message and discards it, with no relay, no audit trail and no
 * admission rules, and greeting at once like mailtrail. What it costs per message, mailtrail costs
 * at least.
 *
 *   node bench/bare-smtp-server.mjs PORT     (prints "listening PORT" when ready)
 */
import { SMTPServer } from 'smtp-server';
import { removeGreetingDelay } from '../dist/listener/fast-greeting.js';

const port = Number(process.argv[2] ?? 0);
const server = new SMTPServer({
  logger: false,
  disableReverseLookup: true,
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  closeTimeout: 100,
  onData(stream, _session, cb) {
    stream.on('data', () => undefined);
    stream.on('end', () => cb(null, 'Ok: discarded'));
  },
});
removeGreetingDelay(server);
server.on('error', () => undefined);
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${server.server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
