/**
 * A throw-away PKI for TLS tests, generated with the openssl CLI (no shell, no dependency).
 *
 * Every call makes a fresh temp dir with a CA and five leaf certificates, one per trust outcome a
 * TLS test needs: good, untrusted, wrong name, expired. Keys are EC P-256, so a whole set takes a
 * few hundred milliseconds. There is no cache inside this module: call it once per test file in
 * `beforeAll` and `cleanup()` in `afterAll`.
 *
 * @example
 * let pki: TestPki;
 * beforeAll(async () => { pki = await makeTestPki(); });
 * afterAll(() => pki.cleanup());
 * // server: { key: pki.server.key, cert: pki.server.cert }; client: tls: { ca: pki.ca }
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One certificate and its key, as PEM strings and as file paths. */
export interface TestCert {
  readonly cert: string;
  readonly key: string;
  readonly certPath: string;
  readonly keyPath: string;
}

export interface TestPki {
  /** The temp dir holding every file. */
  readonly dir: string;
  /** The CA certificate (PEM): what a client puts in `tls.ca`. */
  readonly ca: string;
  readonly caPath: string;
  readonly caKeyPath: string;
  /** Signed by the CA for `localhost`, `127.0.0.1` and `::1`. */
  readonly server: TestCert;
  /** Self-signed for the same names, NOT signed by the CA (DEPTH_ZERO_SELF_SIGNED_CERT). */
  readonly untrusted: TestCert;
  /** Signed by the CA, but only for `wrong.example` (ERR_TLS_CERT_ALTNAME_INVALID). */
  readonly wrongName: TestCert;
  /** Signed by the CA for the right names, validity entirely in the past (CERT_HAS_EXPIRED). */
  readonly expired: TestCert;
  /** Removes the temp dir. Safe to call twice. */
  cleanup(): Promise<void>;
}

const SERVER_SAN = 'DNS:localhost,IP:127.0.0.1,IP:::1';

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}

/** A minimal config, independent of the system openssl.cnf (whose defaults differ between distros). */
function opensslConfig(dir: string): string {
  return `# generated for one test run
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${SERVER_SAN}

[v3_self]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = ${SERVER_SAN}

[v3_wrongname]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:wrong.example

# "openssl ca" is the only OpenSSL 3.0 command that takes an arbitrary start date
[ca]
default_ca = test_ca

[test_ca]
database = ${join(dir, 'ca-db', 'index.txt')}
new_certs_dir = ${join(dir, 'ca-db')}
serial = ${join(dir, 'ca-db', 'serial')}
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
commonName = supplied
`;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function serial(): string {
  // positive and non-zero: a leading 1 nibble, then 120 random bits
  return '0x1' + randomBytes(15).toString('hex');
}

/** `YYYYMMDDHHMMSSZ` for `openssl ca -startdate/-enddate`. */
function asn1Time(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:T]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/**
 * Generates the test PKI. Each call makes a new temp dir; nothing is cached between calls.
 *
 * @example
 * const pki = await makeTestPki();
 * const upstream = await startFakeUpstream({ tls: { key: pki.server.key, cert: pki.server.cert } });
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'mailtrail-pki-'));
  try {
    const cnf = join(dir, 'openssl.cnf');
    await writeFile(cnf, opensslConfig(dir));
    await mkdir(join(dir, 'ca-db'));
    await writeFile(join(dir, 'ca-db', 'index.txt'), '');
    await writeFile(join(dir, 'ca-db', 'serial'), '1000\n');

    const p = (name: string) => join(dir, name);

    // CA
    await openssl(
      [
        'req',
        '-x509',
        ...EC,
        '-config',
        cnf,
        '-extensions',
        'v3_ca',
        '-days',
        '3',
        '-subj',
        '/CN=mailtrail test CA',
        '-set_serial',
        serial(),
        '-keyout',
        p('ca.key'),
        '-out',
        p('ca.crt'),
      ],
      dir,
    );

    const csr = async (name: string, cn: string) =>
      openssl(['req', '-new', ...EC, '-config', cnf, '-subj', `/CN=${cn}`, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`)], dir);
    const signByCa = async (name: string, ext: string) =>
      openssl(
        [
          'x509',
          '-req',
          '-in',
          p(`${name}.csr`),
          '-CA',
          p('ca.crt'),
          '-CAkey',
          p('ca.key'),
          '-set_serial',
          serial(),
          '-days',
          '2',
          '-sha256',
          '-extfile',
          cnf,
          '-extensions',
          ext,
          '-out',
          p(`${name}.crt`),
        ],
        dir,
      );

    await Promise.all([
      (async () => {
        await csr('server', 'localhost');
        await signByCa('server', 'v3_server');
      })(),
      (async () => {
        await csr('wrongname', 'wrong.example');
        await signByCa('wrongname', 'v3_wrongname');
      })(),
      openssl(
        [
          'req',
          '-x509',
          ...EC,
          '-config',
          cnf,
          '-extensions',
          'v3_self',
          '-days',
          '2',
          '-subj',
          '/CN=localhost',
          '-set_serial',
          serial(),
          '-keyout',
          p('untrusted.key'),
          '-out',
          p('untrusted.crt'),
        ],
        dir,
      ),
      (async () => {
        await csr('expired', 'localhost');
        const now = Date.now();
        await openssl(
          [
            'ca',
            '-batch',
            '-notext',
            '-config',
            cnf,
            '-name',
            'test_ca',
            '-extfile',
            cnf,
            '-extensions',
            'v3_server',
            '-cert',
            p('ca.crt'),
            '-keyfile',
            p('ca.key'),
            '-in',
            p('expired.csr'),
            '-out',
            p('expired.crt'),
            '-startdate',
            asn1Time(new Date(now - 10 * 86_400_000)),
            '-enddate',
            asn1Time(new Date(now - 86_400_000)),
          ],
          dir,
        );
      })(),
    ]);

    const load = async (name: string): Promise<TestCert> => ({
      cert: await readFile(p(`${name}.crt`), 'utf8'),
      key: await readFile(p(`${name}.key`), 'utf8'),
      certPath: p(`${name}.crt`),
      keyPath: p(`${name}.key`),
    });

    const [ca, server, untrusted, wrongName, expired] = await Promise.all([
      readFile(p('ca.crt'), 'utf8'),
      load('server'),
      load('untrusted'),
      load('wrongname'),
      load('expired'),
    ]);

    return {
      dir,
      ca,
      caPath: p('ca.crt'),
      caKeyPath: p('ca.key'),
      server,
      untrusted,
      wrongName,
      expired,
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
