/**
 * The console's pages in a real browser (docs/console.md, "The pages"): Debian's chromium driven by
 * playwright-core, against a real relay, the fake upstream and mail sent with swaks. One browser for
 * the file; each test its own browser context (its own cookies). A screenshot of each view is kept
 * in test-results/screenshots/.
 *
 * Without chromium (`apt-get install chromium`; .ci/run installs it) the file is skipped with a note;
 * under CI a missing browser is a failure.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueueAction, QueueActionResult, QueueActor, SpoolControl, SpoolEntry, SpoolFilter } from '../../src/console/queue.js';
import { ConsoleClient, eventually, startConsoleRelay } from '../helpers/console-client.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, type RunningRelay } from '../helpers/relay-harness.js';

const CHROMIUM = process.env.MAILTRAIL_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOTS = 'test-results/screenshots';
/** The flags the console's tests run chromium with: no sandbox (containers), nothing phoned home. */
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];

function browserAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI) throw new Error(`chromium is not installed at ${CHROMIUM} (.ci/run installs the Debian package chromium)`);
  process.stderr.write(`[console-browser] skipped: no chromium at ${CHROMIUM}\n`);
  return false;
}

/** The mailtrail id in a reply the client got. */
function idIn(text: string): string {
  const id = /\(id ([0-9A-Z]{26})\)/.exec(text)?.[1];
  if (!id) throw new Error(`no mailtrail id in ${JSON.stringify(text)}`);
  return id;
}

/** Sends one message with swaks as an SMTP user; answers swaks' transcript. */
function swaks(port: number, user: string, pass: string, opts: { from: string; to: string; messageId: string }): Promise<string> {
  const args = ['--server', `127.0.0.1:${port}`, '--auth', 'PLAIN', '--auth-user', user, '--auth-password', pass];
  args.push(
    '--from',
    opts.from,
    '--to',
    opts.to,
    '--header',
    `Message-ID: ${opts.messageId}`,
    '--header',
    'Subject: console test',
    '--body',
    'Hello from swaks.',
  );
  return new Promise((resolve) => execFile('swaks', args, { timeout: 20_000 }, (_err, stdout) => resolve(String(stdout))));
}

/**
 * A spool in memory behind the console's queue endpoints: entries change state with the actions,
 * and each action is logged with who acted, as the spool writes it in its `spool` record.
 */
class TestSpool implements SpoolControl {
  readonly entries = new Map<string, SpoolEntry & { state: string }>([
    ['Q-BILLING-1', { id: 'Q-BILLING-1', user: 'billing', state: 'deferred', upstream: 'primary', to: ['ana@example.org'], attempts: 3 }],
    ['Q-BILLING-2', { id: 'Q-BILLING-2', user: 'billing', state: 'deferred', upstream: 'primary', to: ['bo@example.org'], attempts: 1 }],
    ['Q-NEWS-1', { id: 'Q-NEWS-1', user: 'news', state: 'queued', upstream: 'primary', to: ['list@example.net'], attempts: 0 }],
  ]);
  readonly records: { type: 'spool'; action: QueueAction; id: string; by: QueueActor }[] = [];

  async list(filter: SpoolFilter): Promise<{ items: SpoolEntry[]; next: string | null }> {
    const items = [...this.entries.values()].filter(
      (e) => (filter.users === null || (e.user !== null && filter.users.includes(e.user))) && (filter.state === null || e.state === filter.state),
    );
    return { items, next: null };
  }

  async show(id: string): Promise<SpoolEntry | null> {
    return this.entries.get(id) ?? null;
  }

  async act(action: QueueAction, ids: readonly string[], by: QueueActor): Promise<QueueActionResult[]> {
    return ids.map((id) => {
      const entry = this.entries.get(id);
      if (!entry) return { id, ok: false, code: 'not_found' };
      if (action === 'delete' || action === 'bounce') this.entries.delete(id);
      else entry.state = action === 'hold' ? 'held' : 'queued';
      this.records.push({ type: 'spool', action, id, by });
      return { id, ok: true };
    });
  }

  parked(): ReadonlyMap<string, number> {
    return new Map([['primary', [...this.entries.values()].filter((e) => e.state === 'deferred').length]]);
  }
}

describe.skipIf(!browserAvailable())('the console in a real browser', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let spool: TestSpool;
  let browser: Browser;
  let base: string;
  const contexts: BrowserContext[] = [];
  const sent: Record<string, { id: string; messageId: string; to: string }> = {};

  /** A fresh context (no cookies) and its page. */
  const newPage = async (storageState?: Awaited<ReturnType<BrowserContext['storageState']>>): Promise<Page> => {
    const context = await browser.newContext({ baseURL: base, viewport: { width: 1360, height: 860 }, colorScheme: 'light', storageState });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    return page;
  };

  const login = async (page: Page, username: string, password: string): Promise<void> => {
    await page.goto('/');
    await page.getByLabel('Username').fill(username);
    await page.locator('input[type=password]').fill(password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('button', { name: 'Log out' }).waitFor();
  };

  /** A page logged in as a console user: the login form once per user, then its cookie is reused. */
  const sessions = new Map<string, Awaited<ReturnType<BrowserContext['storageState']>>>();
  const loggedIn = async (username: 'admin' | 'ana', path = '/'): Promise<Page> => {
    let state = sessions.get(username);
    if (state === undefined) {
      const first = await newPage();
      await login(first, username, `${username}-pass-1`);
      state = await first.context().storageState();
      sessions.set(username, state);
    }
    const page = await newPage(state);
    await page.goto(path);
    await page.getByRole('button', { name: 'Log out' }).waitFor();
    return page;
  };

  const shot = async (page: Page, name: string): Promise<void> => {
    await page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
  };

  const sendAs = async (user: 'billing' | 'news', name: string): Promise<{ id: string; messageId: string; to: string }> => {
    const messageId = `<${name}-${Date.now()}@${user}.example.com>`;
    const to = `${name}@example.org`;
    const result = await relay.send({
      auth: { user, pass: `${user}-pass-1` },
      from: `${user}@example.com`,
      to: [to],
      raw: simpleMessage({ from: `${user}@example.com`, to, messageId }),
    });
    const message = { id: idIn(result.response ?? ''), messageId, to };
    sent[name] = message;
    return message;
  };

  beforeAll(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    upstream = await startFakeUpstream();
    // A spare upstream nobody listens for: its health probe fails (a connection error, no reply).
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise((resolve) => dead.close(resolve));
    relay = await startConsoleRelay([
      { name: 'primary', port: upstream.port },
      { name: 'spare', port: deadPort, probe: { enabled: true, interval: 500, timeout: 2_000 } },
    ]);
    spool = new TestSpool();
    relay.app.attachSpool(spool);
    base = relay.httpUrl!;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    await sendAs('billing', 'billing-ok');
    await sendAs('news', 'news-ok');
    await upstream.setFaults({
      rcpt: (address) => (address.startsWith('billing-failed') ? { code: 550, text: '5.1.1 <billing-failed@example.org>: User unknown' } : null),
    });
    await sendAs('billing', 'billing-failed');
    await upstream.resetFaults();
    // The index follows the trail about four times a second: wait until it has the three.
    const admin = new ConsoleClient(base);
    await admin.login('admin-pass-1', 'admin');
    await eventually(
      async () => ((await admin.get<{ items: unknown[] }>('/api/v1/transactions')).body.items.length >= 3 ? true : undefined),
      20_000,
      'the index',
    );
  }, 60_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await relay?.stop();
    await upstream?.close();
  });

  it('shows a login form with a username field, one password field and a submit button', async () => {
    const page = await newPage();
    await page.goto('/');
    await expect(page.locator('input[type=password]').count()).resolves.toBe(1);
    await expect(page.getByLabel('Username').isVisible()).resolves.toBe(true);
    await expect(page.locator('button[type=submit]').isVisible()).resolves.toBe(true);
    await shot(page, 'login');
  });

  it('refuses a wrong password, says so and sets no session (the form used with the keyboard alone)', async () => {
    const page = await newPage();
    await page.goto('/');
    await page.getByLabel('Username').waitFor();
    await page.keyboard.press('Tab');
    await page.keyboard.type('admin');
    await page.keyboard.press('Tab');
    await page.keyboard.type('not-the-password');
    await page.keyboard.press('Enter');
    await expect(page.getByRole('alert').textContent()).resolves.toContain('Wrong username or password');
    expect(await page.context().cookies()).toEqual([]);
    const status = await page.evaluate(async () => (await fetch('/api/v1/session')).status);
    expect(status).toBe(401);
  });

  it('logs in, shows who is logged in, and logs out back to the login form', async () => {
    const page = await newPage();
    await login(page, 'admin', 'admin-pass-1');
    await expect(page.locator('header .who').textContent()).resolves.toContain('admin');
    const cookie = (await page.context().cookies()).find((c) => c.name === 'mailtrail_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('input[type=password]').waitFor();
    await expect(page.getByText('You are logged out.').isVisible()).resolves.toBe(true);
    const status = await page.evaluate(async () => (await fetch('/api/v1/session')).status);
    expect(status).toBe(401);
  });

  it('shows the login form again, saying why, once the session has ended elsewhere', async () => {
    const page = await newPage();
    await login(page, 'admin', 'admin-pass-1');
    // The session ends outside this page (as at idle expiry): the next request finds it gone.
    const ended = await page.evaluate(async () => {
      const { csrf } = (await (await fetch('/api/v1/session')).json()) as { csrf: string };
      return (await fetch('/api/v1/logout', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: '{}' })).status;
    });
    expect(ended).toBe(200);
    await page.getByRole('link', { name: 'Upstreams' }).click();
    await page.locator('input[type=password]').waitFor();
    await expect(page.getByText('Your session ended: log in again.').isVisible()).resolves.toBe(true);
  });

  it("refuses a POST without the CSRF token from the page's own context, and accepts it with the token", async () => {
    const page = await loggedIn('admin');
    const post = (csrf: string | null) =>
      page.evaluate(async (token) => {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (token !== null) headers['x-csrf-token'] = token;
        const res = await fetch('/api/v1/queue/actions', { method: 'POST', headers, body: JSON.stringify({ action: 'retry', ids: ['Q-NONE'] }) });
        return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
      }, csrf);
    const without = await post(null);
    expect([without.status, without.body.error?.code]).toEqual([403, 'csrf']);
    const forged = await post('not-the-token');
    expect([forged.status, forged.body.error?.code]).toEqual([403, 'csrf']);
    const csrf = await page.evaluate(async () => ((await (await fetch('/api/v1/session')).json()) as { csrf: string }).csrf);
    expect((await post(csrf)).status).toBe(200);
    expect(spool.records.filter((r) => r.id === 'Q-NONE')).toEqual([]);
  });

  it('shows a message sent with swaks in the live list within a second of its reply', async () => {
    const page = await loggedIn('admin');
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    const messageId = `<live-${Date.now()}@billing.example.com>`;
    const transcript = await swaks(relay.port, 'billing', 'billing-pass-1', { from: 'billing@example.com', to: 'live@example.org', messageId });
    const replied = Date.now();
    const id = idIn(transcript);
    await page.locator(`tr[data-id="${id}"]`).waitFor({ timeout: 1_000 });
    const shownAfterMs = Date.now() - replied;
    expect(shownAfterMs).toBeLessThan(1_000);
    const row = await page.locator(`tr[data-id="${id}"]`).textContent();
    expect(row).toContain('delivered');
    expect(row).toContain('billing@example.com → live@example.org');
    expect(row).toContain('primary');
    await shot(page, 'transactions');
  });

  it('pauses the live list and shows what came meanwhile on resume', async () => {
    const page = await loggedIn('admin');
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    await page.getByRole('button', { name: 'Pause' }).click();
    const { id } = await sendAs('billing', 'while-paused');
    await page.getByRole('status').filter({ hasText: '1 new waiting' }).waitFor();
    expect(await page.locator(`tr[data-id="${id}"]`).count()).toBe(0);
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator(`tr[data-id="${id}"]`).waitFor();
  });

  it('finds a message by its Message-ID and by an address with the search box', async () => {
    const page = await loggedIn('admin');
    await page.getByRole('link', { name: 'Search' }).click();
    const box = page.locator('input[type=search]');
    /** Searches and waits until the rows are this search's: `id` among them, each passing `fits`. */
    const search = async (q: string, id: string, fits: (rows: string[]) => boolean): Promise<void> => {
      await box.fill(q);
      await box.press('Enter');
      await page.waitForURL((url) => url.hash === `#/search?${new URLSearchParams({ q }).toString()}`);
      await eventually(
        async () => {
          const rows = page.locator('table.transactions tbody tr');
          const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-id')));
          return ids.includes(id) && fits(await rows.allTextContents()) ? true : undefined;
        },
        10_000,
        `the results of ${q}`,
      );
    };
    const { id, messageId, to } = sent['billing-ok']!;
    await search(`msgid:${messageId}`, id, (rows) => rows.length === 1);
    await search(`to:${to}`, id, (rows) => rows.every((r) => r.includes(to)));
    await search('billing', sent['billing-failed']!.id, (rows) => rows.every((r) => r.includes('billing')));
    await shot(page, 'search');
  });

  it("shows a failed message's page with the upstream's reply, what the client was told and the class", async () => {
    const page = await loggedIn('admin');
    const { id } = sent['billing-failed']!;
    await page.goto(`/messages/${id}`);
    const upstreamReply = await page.locator('.upstream-reply').first().textContent();
    const clientReply = await page.locator('.client-reply').first().textContent();
    expect(upstreamReply).toContain('550 5.1.1');
    expect(upstreamReply).toContain('User unknown');
    expect(clientReply).toContain('550');
    expect(clientReply).toContain(`(id ${id})`);
    await expect(page.locator('h1').textContent()).resolves.toContain(id);
    await expect(page.locator('article .bar').textContent()).resolves.toContain('recipient_rejected');
    await expect(page.getByText('verified against the chain').isVisible()).resolves.toBe(true);
    await expect(page.locator('table.attempts tbody tr').count()).resolves.toBeGreaterThan(0);
    await shot(page, 'message-failed');
  });

  it('opens a message from the live list by its link, at its own address', async () => {
    const page = await loggedIn('admin');
    const { id } = sent['billing-ok']!;
    await page.locator(`tr[data-id="${id}"] a`).click();
    await page.waitForURL(`**/messages/${id}`);
    await expect(page.locator('.client-reply').first().textContent()).resolves.toContain('250');
    await shot(page, 'message-delivered');
  });

  it('holds two queue entries at once from the browser: the spool changes and records who acted', async () => {
    const page = await loggedIn('admin');
    await page.getByRole('link', { name: 'Queue' }).click();
    await page.getByLabel('Select Q-BILLING-1').check();
    await page.getByLabel('Select Q-BILLING-2').check();
    await page.getByRole('button', { name: 'Hold' }).click();
    await page.getByRole('heading', { name: 'hold: 2 done, 0 not' }).waitFor();
    expect(spool.entries.get('Q-BILLING-1')?.state).toBe('held');
    expect(spool.entries.get('Q-BILLING-2')?.state).toBe('held');
    expect(spool.entries.get('Q-NEWS-1')?.state).toBe('queued');
    const records = spool.records.filter((r) => r.action === 'hold');
    expect(records.map((r) => r.id).sort()).toEqual(['Q-BILLING-1', 'Q-BILLING-2']);
    expect(records[0]!.by).toMatchObject({ channel: 'console', user: 'admin', address: '127.0.0.1' });
    await page.locator('tr[data-id="Q-BILLING-1"]').filter({ hasText: 'held' }).waitFor();
    await shot(page, 'queue');
  });

  it('asks before deleting from the queue', async () => {
    const page = await loggedIn('admin');
    await page.goto('/#/queue');
    await page.getByLabel('Select Q-NEWS-1').check();
    await page.getByRole('button', { name: 'Delete' }).click();
    expect(spool.entries.has('Q-NEWS-1')).toBe(true);
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect(spool.records.filter((r) => r.action === 'delete')).toEqual([]);
  });

  it("shows the upstreams (a failed health probe's error too), the error groups and the charts", async () => {
    const page = await loggedIn('admin');
    await page.getByRole('link', { name: 'Upstreams' }).click();
    await page.locator('table.upstreams th', { hasText: 'primary' }).waitFor();
    const spare = page.locator('table.upstreams tr', { has: page.locator('th', { hasText: 'spare' }) });
    await spare.filter({ hasText: 'ECONNREFUSED' }).waitFor();
    await expect(spare.textContent()).resolves.toContain('not usable');
    await shot(page, 'upstreams');
    await page.getByRole('link', { name: 'Error groups' }).click();
    await page.locator('table.errors td', { hasText: 'recipient_rejected' }).first().waitFor();
    await shot(page, 'errors');
    await page.getByRole('link', { name: 'Charts' }).click();
    await eventually(async () => ((await page.locator('.chart canvas').count()) === 4 ? true : undefined), 10_000, 'four charts');
    await expect(page.locator('.plot').first().getAttribute('aria-label')).resolves.toMatch(/delivered \d+ in all/);
    await shot(page, 'charts');
    await page.getByRole('link', { name: 'Last day' }).click();
    await page.waitForURL('**/#/charts?range=24h');
    await eventually(async () => ((await page.locator('.chart canvas').count()) === 4 ? true : undefined), 10_000, 'four charts of the day');
  });

  it("keeps a scoped user to their users' mail: in the list, on another's message page and through the API", async () => {
    const page = await loggedIn('ana');
    await expect(page.locator('header .who').textContent()).resolves.toContain('mail of billing');
    await page.locator(`tr[data-id="${sent['billing-ok']!.id}"]`).waitFor();
    expect(await page.locator(`tr[data-id="${sent['news-ok']!.id}"]`).count()).toBe(0);
    const users = await page.locator('table.transactions tbody tr').allTextContents();
    expect(users.every((t) => !t.includes('news@example.com'))).toBe(true);
    await page.goto(`/messages/${sent['news-ok']!.id}`);
    await expect(page.getByRole('alert').textContent()).resolves.toContain('No message');
    expect(await page.locator('.client-reply').count()).toBe(0);
    const api = await page.evaluate(
      async ([id, messageId]) => ({
        story: (await fetch(`/api/v1/messages/${id}`)).status,
        search: ((await (await fetch(`/api/v1/transactions?q=${encodeURIComponent(`msgid:${messageId}`)}`)).json()) as { items: unknown[] }).items.length,
      }),
      [sent['news-ok']!.id, sent['news-ok']!.messageId] as const,
    );
    expect(api).toEqual({ story: 404, search: 0 });
    await page.goto('/#/queue');
    await page.locator('tr[data-id="Q-BILLING-1"]').waitFor();
    expect(await page.locator('tr[data-id="Q-NEWS-1"]').count()).toBe(0);
    await page.goto('/');
    await page.locator(`tr[data-id="${sent['billing-ok']!.id}"]`).waitFor();
    await shot(page, 'scoped-user');
  });

  it('escapes text from the trail: markup in a Message-ID is shown as text', async () => {
    const page = await loggedIn('admin');
    const hostile = `<img src=x onerror="document.title='owned'">@billing.example.com`;
    const result = await relay.send({
      auth: { user: 'billing', pass: 'billing-pass-1' },
      from: 'billing@example.com',
      to: ['markup@example.org'],
      raw: simpleMessage({ from: 'billing@example.com', to: 'markup@example.org', messageId: hostile }),
    });
    const hostileId = idIn(result.response ?? '');
    await page.goto(`/messages/${hostileId}`);
    await page.locator('.client-reply').first().waitFor();
    expect(await page.locator('article img').count()).toBe(0);
    await expect(page.locator('article').textContent()).resolves.toContain('<img src=x');
    expect(await page.title()).not.toBe('owned');
  });
});
