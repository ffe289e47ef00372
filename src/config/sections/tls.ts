/**
 * `tls`: the certificate of the listeners (docs/config.md, "Keys": `tls`, `tls.cert`, `tls.key`).
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { path } from '../fields.js';
import type { Loaded } from '../loaded.js';

const certificate = z.strictObject({
  /** PEM certificate chain. */
  cert: path(),
  /** PEM private key. */
  key: path(),
});

export const tlsSection = certificate.nullable().optional();

/** PEM paths for the listeners' certificate, resolved; the section is null when absent (ephemeral self-signed). */
export type ListenerTlsConfig = Loaded<typeof certificate>;

/** Relative paths resolve against `baseDir`; absent = null. */
export function toListenerTls(tls: z.output<typeof tlsSection>, baseDir: string): ListenerTlsConfig | null {
  return tls ? { cert: resolve(baseDir, tls.cert), key: resolve(baseDir, tls.key) } : null;
}
