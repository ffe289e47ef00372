/**
 * `node bench/console-stream.mjs`: does an open console slow relaying down?
 *
 * Starts a fast sink and mailtrail (a child process, audit trail with hash chain, the console on its
 * HTTP endpoint), then alternates rounds of the same load with the console closed and with it open in
 * Debian's chromium on the live transactions view (its Server-Sent Events stream, each transaction
 * drawn as it comes; the same browser shows a blank page while the console is closed), and reports each round's messages per second, the medians and their ratio.
 * Interleaving the rounds keeps a noisy machine from favouring one side.
 *
 *   node bench/console-stream.mjs                 3 rounds each way of 3,000 messages, 20 sessions
 *   ROUNDS=5 MESSAGES=5000 node bench/console-stream.mjs
 *   CONSOLE_BROWSERS=0 node bench/console-stream.mjs   the open side is a plain SSE reader instead
 *
 * Needs `npm run build` first (it runs dist/cli.js and serves dist/console/).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { startMailtrail, writeConfig } from './mailtrail-process.mjs';
import { freePort, generateLoad, loadGeneratorKind, startSink } from './tools.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const MESSAGES = Number(process.env.MESSAGES ?? 3000);
const SESSIONS = Number(process.env.SESSIONS ?? 20);
const CHROMIUM = process.env.MAILTRAIL_CHROMIUM ?? '/usr/bin/chromium';
const USE_BROWSER = process.env.CONSOLE_BROWSERS !== '0' && existsSync(CHROMIUM);
const PASSWORD = 'bench-console-password';

const work = mkdtempSync(join(os.tmpdir(), 'mailtrail-console-bench-'));
const sink = await startSink();
const port = await freePort();
const httpPort = await freePort();
const configFile = join(work, 'mailtrail.yaml');
writeConfig(
  configFile,
  {
    hostname: 'bench.mailtrail.test',
    dataDir: join(work, 'data'),
    log: { level: 'warn' },
    listen: [{ host: '127.0.0.1', port }],
    clients: { networks: ['127.0.0.0/8'] },
    limits: { maxConnections: 2000, maxConnectionsPerIp: 2000 },
    upstreams: [{ name: 'sink', url: `smtp://127.0.0.1:${sink.port}`, tls: { mode: 'none' }, pool: { maxConnections: 20, maxMessages: 1000 } }],
    audit: { file: join(work, 'audit.log'), fsync: false, chain: true },
    http: { host: '127.0.0.1', port: httpPort },
    console: { enabled: true, users: [{ username: 'ops', password: PASSWORD }] },
  },
  [],
);
const mailtrail = await startMailtrail({ configFile, logFile: join(work, 'mailtrail.log') });
const base = `http://127.0.0.1:${httpPort}`;

/**
 * The viewer: chromium (launched once, logged in once) whose page shows the live view when the
 * console is open and about:blank when it is closed, so both sides run the same browser and only the
 * console differs; or, without chromium, a bare SSE reader.
 */
async function viewer() {
  if (USE_BROWSER) {
    const { chromium } = await import('playwright-core');
    const args = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
    const page = await browser.newPage({ baseURL: base, viewport: { width: 1360, height: 860 } });
    await page.goto('/');
    await page.getByLabel('Username').fill('ops');
    await page.locator('input[type=password]').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    await page.goto('about:blank');
    return {
      kind: 'chromium, live view',
      open: async () => {
        await page.goto('/');
        await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
        // A second stream in the page only to count what arrives (the view keeps its newest 500 rows).
        await page.evaluate(() => {
          globalThis.benchEvents = 0;
          new globalThis.EventSource('/api/v1/stream').addEventListener('transaction', () => (globalThis.benchEvents += 1));
        });
        return {
          events: () => page.evaluate(() => globalThis.benchEvents),
          close: () => page.goto('about:blank'),
        };
      },
      stop: () => browser.close(),
    };
  }
  const login = await fetch(`${base}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: base },
    body: JSON.stringify({ username: 'ops', password: PASSWORD }),
  });
  const cookie = login.headers.get('set-cookie').split(';', 1)[0];
  return {
    kind: 'SSE reader',
    open: async () => {
      const controller = new AbortController();
      const res = await fetch(`${base}/api/v1/stream`, { headers: { cookie }, signal: controller.signal });
      let events = 0;
      void (async () => {
        try {
          for await (const chunk of res.body)
            events += (
              Buffer.from(chunk)
                .toString('utf8')
                .match(/^event: transaction$/gm) ?? []
            ).length;
        } catch {
          // closed
        }
      })();
      return { events: async () => events, close: async () => controller.abort() };
    },
    stop: async () => undefined,
  };
}

async function round(view, open) {
  const session = open ? await view.open() : null;
  const r = await generateLoad({ port, sessions: SESSIONS, messages: MESSAGES, size: 1024, reuse: false, timeoutMs: 120_000 });
  // Let the last events reach the page before counting them.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const events = session ? await session.events() : null;
  await session?.close();
  if (r.failed > 0) throw new Error(`load failed: ${r.error}`);
  return { open, rate: r.sent / (r.elapsedMs / 1000), events };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  process.stdout.write(`load: ${loadGeneratorKind()}, ${MESSAGES} messages of 1 KiB over ${SESSIONS} sessions per round; sink: ${sink.kind}\n`);
  // Warm-up (JIT, pool, trail file), not counted.
  await generateLoad({ port, sessions: SESSIONS, messages: Math.min(1000, MESSAGES), size: 1024, reuse: false, timeoutMs: 60_000 });
  const view = await viewer();
  const results = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const open of [false, true]) {
      const r = await round(view, open);
      results.push(r);
      process.stdout.write(
        `round ${i + 1} console ${open ? `open (${view.kind})` : 'closed'}: ${r.rate.toFixed(0)} msg/s${r.events !== null ? `, ${r.events} events streamed` : ''}\n`,
      );
    }
  }
  await view.stop();
  const closed = median(results.filter((r) => !r.open).map((r) => r.rate));
  const open = median(results.filter((r) => r.open).map((r) => r.rate));
  process.stdout.write(`\nmedian closed ${closed.toFixed(0)} msg/s, open ${open.toFixed(0)} msg/s: open/closed = ${(open / closed).toFixed(3)}\n`);
} finally {
  await mailtrail.stop();
  await sink.stop();
  rmSync(work, { recursive: true, force: true });
}
