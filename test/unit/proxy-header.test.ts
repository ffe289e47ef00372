import { describe, expect, it } from 'vitest';
import { ipv6Text, readProxyHeader, V2_MAX } from '../../src/listener/proxy-header.js';
import { proxyV1, proxyV2, V2_SIGNATURE } from '../helpers/proxy-protocol.js';

const complete = (buf: Buffer | string) => readProxyHeader(Buffer.from(buf));

describe('reading a PROXY protocol v1 header', () => {
  it('reads TCP4 and TCP6 lines: the client address and port, and where the header ends', () => {
    const line = proxyV1('192.0.2.10', 51000);
    expect(complete(Buffer.concat([line, Buffer.from('EHLO x\r\n')]))).toEqual({
      status: 'complete',
      header: { version: 'v1', command: 'proxy', source: { ip: '192.0.2.10', port: 51000 } },
      length: line.length,
    });
    expect(complete('PROXY TCP6 2001:DB8::7 ::1 40000 25\r\n')).toMatchObject({ header: { source: { ip: '2001:db8::7', port: 40000 } } });
  });

  it('takes UNKNOWN, whatever follows it on the line, as naming no client', () => {
    expect(complete('PROXY UNKNOWN\r\n')).toEqual({ status: 'complete', header: { version: 'v1', command: 'local', source: null }, length: 15 });
    expect(complete('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n')).toMatchObject({ header: { command: 'local', source: null } });
  });

  it('waits for the rest of a line cut anywhere, up to 107 bytes', () => {
    const line = proxyV1('192.0.2.10', 51000);
    for (let i = 1; i < line.length; i++) expect(readProxyHeader(line.subarray(0, i)).status, `${i} bytes`).toBe('incomplete');
    expect(complete('PROXY UNKNOWN ' + 'x'.repeat(93))).toEqual({ status: 'invalid', reason: 'PROXY v1 line longer than 107 bytes' });
  });

  it.each([
    ['a command, not a header', 'EHLO client.example\r\n', 'not a PROXY protocol header'],
    ['lower case', 'proxy TCP4 192.0.2.1 127.0.0.1 1 2\r\n', 'not a PROXY protocol header'],
    ['an unknown protocol', 'PROXY UDP4 192.0.2.1 127.0.0.1 1 2\r\n', 'PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN'],
    ['a host name for an address', 'PROXY TCP4 evil.example 127.0.0.1 1 2\r\n', 'PROXY v1: address not IPv4'],
    ['an IPv6 address under TCP4', 'PROXY TCP4 ::1 127.0.0.1 1 2\r\n', 'PROXY v1: address not IPv4'],
    ['an address with CRLF smuggled in', 'PROXY TCP4 192.0.2.1\r\n', 'PROXY v1: not five fields separated by single spaces'],
    ['a port out of range', 'PROXY TCP4 192.0.2.1 127.0.0.1 70000 25\r\n', 'PROXY v1: port not a number from 0 to 65535'],
    ['a port with a leading zero', 'PROXY TCP4 192.0.2.1 127.0.0.1 025 25\r\n', 'PROXY v1: port not a number from 0 to 65535'],
    ['two spaces', 'PROXY TCP4  192.0.2.1 127.0.0.1 1 25\r\n', 'PROXY v1: not five fields separated by single spaces'],
    ['a field too many', 'PROXY TCP4 192.0.2.1 127.0.0.1 1 25 x\r\n', 'PROXY v1: not five fields separated by single spaces'],
  ])('refuses %s', (_what, text, reason) => {
    expect(complete(text)).toEqual({ status: 'invalid', reason });
  });
});

describe('reading a PROXY protocol v2 header', () => {
  it('reads an IPv4 client, skipping the TLVs the length covers and nothing more', () => {
    const header = proxyV2({ src: '192.0.2.10', sport: 51000, tlvs: [{ type: 0xea, value: Buffer.from('vpce-0123456789abcdef0') }] });
    const read = complete(Buffer.concat([header, Buffer.from('\x16\x03\x01')]));
    expect(read).toEqual({ status: 'complete', header: { version: 'v2', command: 'proxy', source: { ip: '192.0.2.10', port: 51000 } }, length: header.length });
  });

  it('reads an IPv6 client in RFC 5952 form, and an IPv4-mapped one as IPv4', () => {
    expect(complete(proxyV2({ src: '2001:db8:0:0:0:0:0:7', sport: 1 }))).toMatchObject({ header: { source: { ip: '2001:db8::7', port: 1 } } });
    expect(complete(proxyV2({ src: '::ffff:c000:20a', sport: 2 }))).toMatchObject({ header: { source: { ip: '192.0.2.10', port: 2 } } });
  });

  it('takes LOCAL (a health check) and address families without an IP address as naming no client', () => {
    expect(complete(proxyV2({ command: 'local' }))).toEqual({ status: 'complete', header: { version: 'v2', command: 'local', source: null }, length: 16 });
    // LOCAL with an address block (HAProxy may send one): skipped.
    expect(complete(proxyV2({ command: 'local', src: '192.0.2.1', verCmd: 0x20 }))).toMatchObject({ header: { command: 'local' } });
    expect(complete(proxyV2({ famProto: 0x00 }))).toMatchObject({ header: { command: 'local', source: null } });
    expect(complete(proxyV2({ famProto: 0x31, tlvs: [{ type: 0, value: Buffer.alloc(213) }] }))).toMatchObject({ header: { command: 'local' } });
  });

  it('waits for the whole header, however it is cut', () => {
    const header = proxyV2({ src: '2001:db8::7', sport: 9, tlvs: [{ type: 0x01, value: Buffer.from('smtp') }] });
    for (let i = 1; i < header.length; i++) expect(readProxyHeader(header.subarray(0, i)).status, `${i} bytes`).toBe('incomplete');
    expect(readProxyHeader(header).status).toBe('complete');
  });

  it.each([
    ['a broken signature', Buffer.concat([V2_SIGNATURE.subarray(0, 11), Buffer.from('X'), Buffer.alloc(4)]), 'not a PROXY protocol header'],
    ['version 1 in the binary form', proxyV2({ src: '192.0.2.1', verCmd: 0x11 }), 'PROXY v2: version is not 2'],
    ['an unknown command', proxyV2({ src: '192.0.2.1', verCmd: 0x22 }), 'PROXY v2: command is neither LOCAL nor PROXY'],
    ['a datagram transport', proxyV2({ src: '192.0.2.1', famProto: 0x12 }), 'PROXY v2: transport is not a stream'],
    ['an unknown family', proxyV2({ src: '192.0.2.1', famProto: 0x41 }), 'PROXY v2: unknown address family'],
    ['an IPv4 block too short', proxyV2({ famProto: 0x11, tlvs: [{ type: 1, value: Buffer.alloc(2) }] }), 'PROXY v2: IPv4 address block too short'],
    ['an IPv6 block too short', proxyV2({ src: '192.0.2.1', famProto: 0x21 }), 'PROXY v2: IPv6 address block too short'],
    ['a length past the bound', proxyV2({ src: '192.0.2.1', tlvs: [{ type: 1, value: Buffer.alloc(V2_MAX) }] }), `PROXY v2 header longer than ${V2_MAX} bytes`],
  ])('refuses %s', (_what, header, reason) => {
    expect(readProxyHeader(header)).toEqual({ status: 'invalid', reason });
  });
});

describe('IPv6 text', () => {
  it.each([
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
  ])('writes %s as %s', (full, short) => {
    const bytes = Buffer.alloc(16);
    full.split(':').forEach((g, i) => bytes.writeUInt16BE(Number.parseInt(g, 16), i * 2));
    expect(ipv6Text(bytes)).toBe(short);
  });
});
