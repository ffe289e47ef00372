import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ERR } from '../error-codes.js';

/**
 * Ed25519 signatures on checkpoint records. A signed checkpoint shipped away from the host proves
 * what the trail's head was at that time: whoever can rewrite the trail (and recompute every hash)
 * still cannot sign for it without the private key.
 *
 * The signed bytes are the checkpoint's canonical serialisation without `signature` and `hash`
 * (chain.ts), UTF-8; the signature is base64 (RFC 8032 Ed25519, no pre-hash: Node's
 * `crypto.sign(null, data, key)`). `keyId` names the key: the first 16 hex digits of SHA-256 over
 * the public key's DER SubjectPublicKeyInfo, so a verifier can tell "signed by another key" from
 * "altered".
 */

export interface CheckpointSigner {
  readonly keyId: string;
  sign(data: string): string;
}

/** Loads a PEM Ed25519 private key (PKCS#8, as `openssl genpkey -algorithm ed25519` writes). */
export function loadSigner(pemFile: string): CheckpointSigner {
  const key = createPrivateKey(readFileSync(pemFile));
  if (key.asymmetricKeyType !== 'ed25519') {
    throw Object.assign(new Error(`${pemFile} is not an Ed25519 private key`), { code: ERR.CHECKPOINT_KEY });
  }
  const keyId = keyIdOf(createPublicKey(key));
  return { keyId, sign: (data) => sign(null, Buffer.from(data, 'utf8'), key).toString('base64') };
}

/** Loads a PEM Ed25519 public key (SPKI); a private key file works too (its public half is used). */
export function loadPublicKey(pemFile: string): KeyObject {
  const key = createPublicKey(readFileSync(pemFile));
  if (key.asymmetricKeyType !== 'ed25519') {
    throw Object.assign(new Error(`${pemFile} is not an Ed25519 key`), { code: ERR.CHECKPOINT_KEY });
  }
  return key;
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

export function signatureValid(publicKey: KeyObject, data: string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(data, 'utf8'), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** A new key pair for `mailtrail keygen`, as PEM (PKCS#8 private, SPKI public). */
export function generateCheckpointKeys(): { readonly privatePem: string; readonly publicPem: string; readonly keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}
