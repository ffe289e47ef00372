import { readFileSync } from 'node:fs';
import { selfSignedCertificate } from './self-signed.js';
import type { Config } from '../config/types.js';

export interface ListenerTls {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  readonly ephemeral: boolean;
}

/**
 * The listeners' certificate. smtp-server would otherwise fall back to its built-in test certificate,
 * whose private key is public. With no certificate configured we generate a
 * throw-away self-signed one (EC P-256, fast), and `ephemeral` says so (a start-up warning: clients
 * must then skip verification, which is fine on loopback and wrong anywhere else).
 */
export function listenerTls(config: Config): ListenerTls {
  if (config.tls) {
    return { key: readFileSync(config.tls.key), cert: readFileSync(config.tls.cert), ephemeral: false };
  }
  const pems = selfSignedCertificate(config.hostname, [config.hostname, 'localhost', '127.0.0.1'], 30);
  return { key: pems.key, cert: pems.cert, ephemeral: true };
}
