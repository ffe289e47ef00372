/**
 * `mailtrail keygen [--out PREFIX]`: an Ed25519 key pair for signing checkpoints. Writes
 * `PREFIX.key` (private, PKCS#8 PEM, mode 0600: it stays with the relay, ideally readable by its
 * user only) and `PREFIX.pub` (public, SPKI PEM: it goes to whoever runs `mailtrail verify`).
 * The same as `openssl genpkey -algorithm ed25519 -out PREFIX.key` followed by
 * `openssl pkey -in PREFIX.key -pubout -out PREFIX.pub`.
 */
import { writeFileSync } from 'node:fs';
import { generateCheckpointKeys } from '../audit/checkpoint-signer.js';
import { readCommandLine } from './command-args.js';

const USAGE = 'usage: mailtrail keygen [--out PREFIX]   writes PREFIX.key and PREFIX.pub (default PREFIX: checkpoint)';

const COMMAND = {
  name: 'keygen',
  usage: USAGE,
  options: { out: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
  args: { max: 0, meant: 'out' },
} as const;

export function keygenCommand(argv: readonly string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  const args = readCommandLine(COMMAND, argv, out, err);
  if (typeof args === 'number') return args;
  const prefix = args.values.out ?? 'checkpoint';
  const keys = generateCheckpointKeys();
  try {
    // `wx`: never overwrite a key that may already sign a trail.
    writeFileSync(`${prefix}.key`, keys.privatePem, { mode: 0o600, flag: 'wx' });
    writeFileSync(`${prefix}.pub`, keys.publicPem, { mode: 0o644, flag: 'wx' });
  } catch (e) {
    err.write(`mailtrail keygen: ${(e as Error).message}\n`);
    return 2;
  }
  out.write(
    `wrote ${prefix}.key (private; keep it on the relay, mode 0600) and ${prefix}.pub (public; for mailtrail verify --public-key)\n` +
      `key id ${keys.keyId}\n` +
      `config: audit: { checkpoint: { signingKey: ${prefix}.key } }\n`,
  );
  return 0;
}
