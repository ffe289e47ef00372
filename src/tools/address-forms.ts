/**
 * Finding an address in a trail written with `audit.privacy`. With `pseudonymize` the trail holds
 * `HMAC(local part)@domain`, so a clear address given on the command line is masked the same way
 * (same function, same key from the configuration) before it is compared; the clear form is kept too,
 * for records written before privacy was turned on. With `domain-only` only the domain can match.
 */
import { maskAddress, type PrivacyMode } from '../audit/privacy.js';
import type { TrailConfig } from '../config/schema.js';
import { toolConfig } from './trail-files.js';
import type { ToolIo } from './tool-io.js';

export interface LookupPrivacy {
  readonly mode: PrivacyMode;
  /** The HMAC key (pseudonymize); null when the configuration has none. */
  readonly key: string | null;
}

/**
 * The trail's privacy setting from the configuration. When the trail file was named on the command
 * line the configuration is optional: without a readable one, addresses are compared as given.
 */
export function privacyFrom(config: TrailConfig | null, configFile: string | undefined, io: ToolIo): LookupPrivacy | null {
  let cfg = config;
  if (!cfg) {
    try {
      cfg = toolConfig(configFile, io);
    } catch {
      return null;
    }
  }
  return { mode: cfg.audit.privacy, key: cfg.audit.hmacKey };
}

/** A full address (something before and after the @), as opposed to a fragment like "@example.com". */
export function isFullAddress(text: string): boolean {
  const at = text.lastIndexOf('@');
  return at > 0 && at < text.length - 1 && !/\s/.test(text);
}

/**
 * The lower-case forms of `text` to look for in the trail: as given, and masked when the trail is
 * private and `text` is a full address (without the HMAC key a pseudonym cannot be made: only the
 * clear form is looked for, and lookup says why).
 */
export function addressNeedles(text: string, privacy: LookupPrivacy | null): string[] {
  const needles = [text.toLowerCase()];
  if (!privacy || privacy.mode === 'clear' || !isFullAddress(text)) return needles;
  if (privacy.mode === 'pseudonymize' && !privacy.key) return needles;
  const masked = maskAddress(text, privacy.mode, privacy.key).toLowerCase();
  if (!needles.includes(masked)) needles.push(masked);
  return needles;
}
