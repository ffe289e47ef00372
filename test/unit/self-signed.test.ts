import { createPrivateKey, X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { createServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { selfSignedCertificate } from '../../src/listener/self-signed.js';

describe('the ephemeral self-signed certificate', () => {
  const { key, cert } = selfSignedCertificate('relay.example.com', ['relay.example.com', 'localhost', '127.0.0.1'], 30);
  const x509 = new X509Certificate(cert);

  it('is a well-formed X.509 certificate signed by its own key', () => {
    expect(x509.subject).toBe('CN=relay.example.com');
    expect(x509.issuer).toBe('CN=relay.example.com');
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(x509.ca).toBe(false);
  });

  it('names the host, localhost and the loopback address, for 30 days', () => {
    expect(x509.subjectAltName).toBe('DNS:relay.example.com, DNS:localhost, IP Address:127.0.0.1');
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    const days = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / 86_400_000;
    expect(Math.round(days)).toBe(30);
  });

  it('is a new key and serial number each time', () => {
    const other = new X509Certificate(selfSignedCertificate('relay.example.com', ['localhost'], 1).cert);
    expect(other.serialNumber).not.toBe(x509.serialNumber);
    expect(other.publicKey.export({ type: 'spki', format: 'der' }).equals(x509.publicKey.export({ type: 'spki', format: 'der' }))).toBe(false);
  });

  it('always encodes its serial number as DER wants it: no leading zero byte a reader refuses as padding', () => {
    // A serial whose first byte came out 0x00 (about one certificate in 256) made OpenSSL refuse it
    // ("asn1 encoding routines::illegal padding"), and a relay without tls.cert then failed to start.
    // Now the first byte is 0x40-0x7f: 16 bytes, positive, no padding, every time.
    for (let i = 0; i < 50; i++) {
      const serial = new X509Certificate(selfSignedCertificate('relay.example.com', ['localhost'], 1).cert).serialNumber;
      expect(serial).toMatch(/^[4-7][0-9A-F]{31}$/);
    }
  });

  it('serves a real TLS handshake that a client pinning it accepts', async () => {
    const server = createServer({ key, cert }, (s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const socket = connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' }, () => undefined);
        let data = '';
        socket.on('data', (d) => (data += d));
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });
      expect(text).toBe('ok');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
