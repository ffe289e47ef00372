/**
 * Writes a realistic audit trail for measuring the trail tools: a million records in seconds.
 *
 *   node bench/make-trail.mjs OUT [--records 1000000] [--seed 1] [--start 2026-11-25T00:00:00Z]
 *                                 [--per-second 8] [--gzip] [--no-chain]
 *
 * The records have the shape the relay writes (docs/audit-record.md; the test suite validates them
 * against docs/audit-record.schema.json): sessions of one to five transactions, most delivered, the
 * rest spread over the failure classes with the replies real providers give (throttling, quota,
 * unknown recipients with the address in the text, spam, connection failures with failover to a second
 * upstream, lost connections after the final dot and their duplicate-linked retries), refusals,
 * session records, alerts during a throttling storm, and a checkpoint every 1,000 records. About 3% of
 * the messages go to the spool (spool mode): a `queued` relay record, a `delivery` record per
 * attempt (the scenario's verdict first, a retry after a deferral) and a `spool` record at the end. Sender and
 * recipient domains follow a Zipf law over 40 and 5,000 domains. Deterministic for a given seed.
 *
 * The hash chain is the relay's (src/audit/chain.ts): `hash` = SHA-256 of the line without `hash`,
 * with `seq` and `prev` appended; so `mailtrail verify` accepts the output.
 *
 * Also a module: `trailRecords(opts)` yields the record objects, for tests.
 */
import { createHash } from 'node:crypto';
import { closeSync, createWriteStream, openSync, writeSync } from 'node:fs';
import { createGzip } from 'node:zlib';
import { pathToFileURL } from 'node:url';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const GENESIS = '0'.repeat(64);

/** mulberry32: a small, fast, seedable PRNG (deterministic output for tests). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Picks by weight from [[weight, value], ...]. */
function weighted(rand, table) {
  const total = table.reduce((s, [w]) => s + w, 0);
  let x = rand() * total;
  for (const [w, v] of table) {
    x -= w;
    if (x < 0) return v;
  }
  return table[table.length - 1][1];
}

/** Zipf(s=1.1) index in [0, n) by inverse CDF over a precomputed table. */
function zipf(n) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / Math.pow(i + 1, 1.1);
  for (let i = 0; i < n; i++) cdf[i] /= sum;
  return (rand) => {
    const x = rand();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** A log-normal duration in whole ms with the given median and spread. */
function lognormal(rand, median, sigma) {
  const u = Math.max(rand(), 1e-12);
  const v = rand();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return Math.max(1, Math.round(median * Math.exp(sigma * z)));
}

function ulid(ms, rand) {
  let t = '';
  let x = ms;
  for (let i = 0; i < 10; i++) {
    t = CROCKFORD[x % 32] + t;
    x = Math.floor(x / 32);
  }
  let r = '';
  for (let i = 0; i < 16; i++) r += CROCKFORD[Math.floor(rand() * 32)];
  return t + r;
}

function token(rand, n, alphabet = '0123456789abcdefghijklmnopqrstuvwxyz') {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}

const HEX = '0123456789abcdef';
const UPPER = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';

const RECIPIENT_DOMAINS_TOP = ['gmail.com', 'outlook.com', 'yahoo.com', 'hotmail.com', 'icloud.com', 'gmx.de', 'web.de', 'orange.fr', 'proton.me', 'aol.com'];
const SENDER_DOMAINS_TOP = ['example.com', 'shop.example.com', 'billing.example.com', 'news.example.net', 'app.example.org'];
const CLIENTS = [
  { ip: '10.0.4.17', helo: 'billing-7f9c', user: 'billing' },
  { ip: '10.0.4.18', helo: 'billing-2a1d', user: 'billing' },
  { ip: '10.0.5.3', helo: 'shop-web-1', user: null },
  { ip: '10.0.5.4', helo: 'shop-web-2', user: null },
  { ip: '10.0.6.9', helo: 'newsletter', user: 'news' },
  { ip: '10.0.7.20', helo: 'crm', user: 'crm' },
];
const TLS_IN = { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' };
const UPSTREAMS = {
  ses: { name: 'ses', host: 'email-smtp.eu-west-1.amazonaws.com', port: 587 },
  backup: { name: 'backup', host: 'smtp.backup-relay.example.net', port: 587 },
  sendgrid: { name: 'sendgrid', host: 'smtp.sendgrid.net', port: 587 },
};

/**
 * Failure scenarios: how the deciding attempt ended. `phase` is how far it got, `replyPhase` which
 * command the reply answered. Addresses and ids in texts vary per message, as in real replies.
 */
const SCENARIOS = [
  [9300, { outcome: 'delivered' }],
  [
    120,
    {
      outcome: 'deferred',
      cls: 'throttled',
      retryable: true,
      actor: 'upstream',
      scope: 'account',
      rule: 'ses-max-send-rate',
      code: 'EENVELOPE',
      reply: [454, '4.7.0', 'Throttling failure: Maximum sending rate exceeded.'],
      replyPhase: 'mail',
      phase: 'envelope',
      client: [451, '4.7.0', 'Upstream is throttling: try again later'],
    },
  ],
  [
    40,
    {
      outcome: 'deferred',
      cls: 'quota',
      retryable: true,
      actor: 'operator',
      scope: 'account',
      rule: 'ses-daily-quota',
      code: 'EENVELOPE',
      reply: [454, '4.7.0', 'Throttling failure: Daily message quota exceeded.'],
      replyPhase: 'mail',
      phase: 'envelope',
      client: [451, '4.7.0', 'Upstream sending quota reached: try again later'],
    },
  ],
  [
    60,
    {
      outcome: 'deferred',
      cls: 'upstream_unavailable',
      retryable: true,
      actor: 'upstream',
      scope: 'connection',
      rule: 'reply-421',
      code: 'ECONNECTION',
      reply: [421, '4.3.2', 'Service not available, closing transmission channel'],
      replyPhase: 'greeting',
      phase: 'connecting',
      client: [451, '4.3.2', 'Upstream unavailable: try again later'],
    },
  ],
  [
    50,
    {
      outcome: 'deferred',
      cls: 'timeout',
      retryable: true,
      actor: 'upstream',
      scope: 'connection',
      rule: 'timeout',
      code: 'ETIMEDOUT',
      timeoutType: 'GREETING_TIMEOUT',
      phase: 'connecting',
      client: [451, '4.4.2', 'Upstream timed out: try again later'],
    },
  ],
  [
    40,
    {
      outcome: 'deferred',
      cls: 'recipient_deferred',
      retryable: true,
      actor: 'recipient',
      scope: 'recipient',
      rule: 'rcpt-4xx',
      code: 'EENVELOPE',
      reply: [452, '4.2.2', '<{rcpt}>: Recipient address rejected: mailbox full'],
      replyPhase: 'rcpt',
      phase: 'envelope',
      client: [452, '4.2.2', '<{rcpt}>: Recipient address rejected: mailbox full'],
    },
  ],
  [
    90,
    {
      outcome: 'rejected',
      cls: 'recipient_rejected',
      retryable: false,
      actor: 'recipient',
      scope: 'recipient',
      rule: 'rcpt-5xx',
      code: 'EENVELOPE',
      reply: [550, '5.1.1', '<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table'],
      replyPhase: 'rcpt',
      phase: 'envelope',
      client: [550, '5.1.1', '<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table'],
    },
  ],
  [
    50,
    {
      outcome: 'rejected',
      cls: 'content_rejected',
      retryable: false,
      actor: 'sender',
      scope: 'message',
      rule: 'data-5xx-policy',
      code: 'EMESSAGE',
      reply: [554, '5.7.1', 'Message rejected: spam content detected (score {n})'],
      replyPhase: 'data',
      phase: 'done',
      client: [554, '5.7.1', 'Message rejected: spam content detected (score {n})'],
    },
  ],
  [
    15,
    {
      outcome: 'rejected',
      cls: 'sender_rejected',
      retryable: false,
      actor: 'sender',
      scope: 'message',
      rule: 'ses-unverified-identity',
      code: 'EENVELOPE',
      reply: [554, '5.7.1', 'Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: {from}'],
      replyPhase: 'mail',
      phase: 'envelope',
      client: [554, '5.7.1', 'Message rejected: Email address is not verified.'],
    },
  ],
  [
    100,
    {
      outcome: 'partial',
      cls: 'recipient_rejected',
      retryable: false,
      actor: 'recipient',
      scope: 'recipient',
      rule: 'rcpt-5xx',
      code: null,
      reply: [250, null, 'Ok: queued as {queue}'],
      replyPhase: 'data',
      phase: 'done',
      client: null,
      partial: true,
    },
  ],
  [
    30,
    {
      outcome: 'unknown',
      cls: 'unknown_outcome',
      retryable: null,
      actor: 'upstream',
      scope: 'message',
      rule: 'lost-after-dot',
      code: 'ECONNECTION',
      cause: 'ECONNRESET',
      phase: 'sent',
      client: [451, '4.4.2', 'Connection lost after the message was sent: the upstream may have it; retry may duplicate'],
    },
  ],
  [
    20,
    {
      outcome: 'aborted',
      cls: 'client_aborted',
      retryable: true,
      actor: 'sender',
      scope: 'message',
      rule: null,
      code: 'ECONNECTION',
      phase: null,
      client: [0, null, ''],
    },
  ],
  [85, { outcome: 'delivered', failover: { cls: 'connect', code: 'ESOCKET', cause: 'ECONNREFUSED' } }],
];

const REJECTS = [
  [40, { cls: 'relay_denied', command: 'MAIL', reply: [554, '5.7.1', 'Relay access denied'], source: 'policy' }],
  [20, { cls: 'auth_failed', command: 'AUTH', reply: [535, '5.7.8', 'Authentication credentials invalid'], source: 'policy' }],
  [20, { cls: 'sender_denied', command: 'MAIL', reply: [553, '5.7.1', 'Sender address not allowed for this user'], source: 'policy' }],
  [15, { cls: 'too_many_recipients', command: 'RCPT', reply: [452, '4.5.3', 'Too many recipients'], source: 'policy' }],
  [10, { cls: 'rate_limited', command: 'MAIL', reply: [451, '4.7.1', 'Rate limit reached: 60 messages per minute for user billing'], source: 'policy' }],
  [10, { cls: 'protocol_violation', command: 'DATA', reply: [503, '5.5.1', 'Error: send RCPT first'], source: 'protocol' }],
];

/**
 * The records of a trail, in time order. `records` counts every line (relay, reject, session, alert,
 * checkpoint).
 */
export function* trailRecords(opts = {}) {
  for (const { record } of sealedRecords(opts)) yield record;
}

/** The records with their line in the file (sealed into the chain when `chain`). */
function* sealedRecords({ records = 1_000_000, seed = 1, start = Date.parse('2026-11-25T00:00:00Z'), perSecond = 8, chain = true } = {}) {
  const rand = prng(seed);
  // Spool mode draws from its own sequence: the rest of the trail stays what it was for a seed.
  const spoolRand = prng(seed ^ 0x5eed5);
  const recipientDomains = [...RECIPIENT_DOMAINS_TOP, ...Array.from({ length: 4990 }, (_, i) => `corp${i}.example`)];
  const senderDomains = [...SENDER_DOMAINS_TOP, ...Array.from({ length: 35 }, (_, i) => `tenant${i}.example.com`)];
  const pickRecipientDomain = zipf(recipientDomains.length);
  const pickSenderDomain = zipf(senderDomains.length);
  let now = start;
  let written = 0;
  let seq = 0;
  let prev = GENESIS;
  let sinceCheckpoint = 0;
  /** Messages to send again later (after a deferral or an unknown outcome): the app's retry. */
  const retries = [];
  let stormUntil = 0;

  const seal = (record) => {
    written += 1;
    sinceCheckpoint += 1;
    const json = JSON.stringify(record);
    if (!chain) return { record, line: json };
    seq += 1;
    const canonical = `${json.slice(0, -1)},"seq":${seq},"prev":"${prev}"}`;
    const hash = createHash('sha256').update(canonical).digest('hex');
    const sealed = { record: { ...record, seq, prev, hash }, line: `${canonical.slice(0, -1)},"hash":"${hash}"}` };
    prev = hash;
    return sealed;
  };
  const tick = () => {
    now += Math.max(1, Math.round((-Math.log(Math.max(rand(), 1e-12)) * 1000) / perSecond));
    return now;
  };
  const iso = (ms) => new Date(ms).toISOString();
  const address = (domains, pick) =>
    `${token(rand, 3 + Math.floor(rand() * 8), 'abcdefghijklmnopqrstuvwxyz')}${rand() < 0.3 ? '.' + token(rand, 4, 'abcdefghijklmnopqrstuvwxyz') : ''}@${domains[pick(rand)]}`;

  while (written < records) {
    const c = CLIENTS[Math.floor(rand() * CLIENTS.length)];
    const sessionId = token(rand, 16);
    const client = { ip: c.ip, port: 30000 + Math.floor(rand() * 30000), helo: c.helo, user: c.user, tls: rand() < 0.9 ? TLS_IN : null };
    const sessionStart = tick();
    const txns = 1 + Math.floor(rand() * rand() * 10);
    let accepted = 0;
    let refused = 0;
    const refusals = {};
    let bytes = 0;
    let txn = 0;
    for (let t = 0; t < txns && written < records; t++) {
      if (rand() < 0.012) {
        const rj = weighted(rand, REJECTS);
        const time = tick();
        refused += 1;
        refusals[rj.cls] = (refusals[rj.cls] ?? 0) + 1;
        const from = rj.command === 'AUTH' ? null : address(senderDomains, pickSenderDomain);
        const to = rj.command === 'RCPT' ? address(recipientDomains, pickRecipientDomain) : null;
        const id = ulid(time, rand);
        yield seal({
          v: 1,
          type: 'reject',
          time: iso(time),
          id,
          session: { id: sessionId, txn },
          client,
          command: rj.command,
          from,
          to,
          authUser: rj.cls === 'auth_failed' ? 'billing' : null,
          class: rj.cls,
          // Every refusal's text ends with its record's id (smtp-server's own ones too).
          clientReply: { code: rj.reply[0], enhanced: rj.reply[1], text: `${rj.reply[2]} (id ${id})` },
          source: rj.source,
          count: 1,
        });
        if (rj.cls !== 'too_many_recipients') continue;
      }
      if (written >= records) break;
      const time = tick();
      txn += 1;
      const retry = retries.length > 0 && retries[0].due <= time ? retries.shift() : null;
      const storm = time < stormUntil;
      let sc = retry && rand() < 0.85 ? SCENARIOS[0][1] : weighted(rand, SCENARIOS);
      if (storm && rand() < 0.5) sc = SCENARIOS[1][1];
      const record = relayRecord({
        rand,
        time,
        sessionId,
        txn,
        client,
        sc,
        retry,
        senderDomains,
        recipientDomains,
        pickSenderDomain,
        pickRecipientDomain,
        address,
      });
      const spooled = record.outcome !== 'aborted' && spoolRand() < 0.03;
      if (!spooled && (record.outcome === 'deferred' || record.outcome === 'unknown')) {
        if (retries.length < 1000) retries.push({ due: time + 60_000 + Math.floor(rand() * 600_000), of: record });
      }
      bytes += record.message.size;
      if (spooled || (record.clientReply.code >= 200 && record.clientReply.code < 300)) accepted += 1;
      else refused += 1;
      if (spooled) {
        for (const r of spoolStory(record, time, spoolRand)) if (written < records) yield seal(r);
      } else {
        yield seal(record);
      }
      if (sc.cls === 'throttled' && !storm && rand() < 0.005 && written < records) {
        stormUntil = time + 120_000;
        const at = tick();
        yield seal({
          v: 1,
          type: 'alert',
          time: iso(at),
          id: ulid(at, rand),
          state: 'fired',
          rule: 'throttling',
          upstream: 'ses',
          class: 'throttled',
          message: 'ses is throttling: 12 of the last 50 messages deferred (451 4.7.0 Maximum sending rate exceeded)',
          sinks: ['webhook'],
        });
      }
      if (stormUntil && time >= stormUntil && written < records) {
        stormUntil = 0;
        const at = tick();
        yield seal({
          v: 1,
          type: 'alert',
          time: iso(at),
          id: ulid(at, rand),
          state: 'resolved',
          rule: 'throttling',
          upstream: 'ses',
          class: 'throttled',
          message: 'ses is no longer throttling',
          sinks: ['webhook'],
        });
      }
      if (chain && sinceCheckpoint >= 1000 && written < records) {
        const at = tick();
        const count = sinceCheckpoint;
        sinceCheckpoint = 0;
        yield seal({ v: 1, type: 'checkpoint', time: iso(at), id: ulid(at, rand), head: { seq, hash: prev }, count, keyId: null, signature: null });
      }
    }
    if (written >= records) break;
    const end = tick();
    // A session record's id is chosen when the connection opens.
    yield seal({
      v: 1,
      type: 'session',
      time: iso(end),
      id: ulid(sessionStart, rand),
      session: { id: sessionId },
      client,
      transactions: txn,
      accepted,
      rejected: refused,
      bytes,
      durationMs: end - sessionStart,
      refusals,
      refusalsSummarised: {},
    });
  }
}

function relayRecord({ rand, time, sessionId, txn, client, sc, retry, senderDomains, recipientDomains, pickSenderDomain, pickRecipientDomain, address }) {
  const iso = (ms) => new Date(ms).toISOString();
  const id = ulid(time, rand);
  const prior = retry?.of ?? null;
  const from = prior ? prior.from : address(senderDomains, pickSenderDomain);
  const to = prior
    ? prior.rcpt.map((r) => r.to)
    : Array.from({ length: 1 + Math.floor(rand() * rand() * 4) }, () => address(recipientDomains, pickRecipientDomain));
  const message = prior
    ? prior.message
    : {
        size: lognormal(rand, 18_000, 1.2),
        sha256: token(rand, 64, HEX),
        messageId: `<${token(rand, 12)}.${Math.floor(time / 1000)}@${from.split('@')[1]}>`,
        subject: null,
        headerFrom: rand() < 0.5 ? from : `App <${from}>`,
      };
  const fill = (text, rcpt) =>
    text
      .replace('{rcpt}', rcpt)
      .replace('{from}', from)
      .replace('{n}', String(5 + Math.floor(rand() * 20)))
      .replace('{queue}', queueId);
  const upstreamName = client.user === 'news' ? 'sendgrid' : 'ses';
  const u = UPSTREAMS[upstreamName];
  const reused = rand() < 0.8;
  const queueId = upstreamName === 'ses' ? `0102019a${token(rand, 8, HEX)}-${token(rand, 8, HEX)}-000000` : token(rand, 22, UPPER);
  const receiveMs = lognormal(rand, 6, 0.8);
  const waitMs = rand() < 0.9 ? 0 : lognormal(rand, 20, 1);
  const connectMs = reused ? 0 : lognormal(rand, 90, 0.5);
  const envelopeMs = lognormal(rand, 30, 0.6);
  const dataMs = lognormal(rand, 45, 0.9);
  const attempts = [];
  let deciding = u;
  let startedAt = time - (receiveMs + waitMs + connectMs + envelopeMs + dataMs);
  if (sc.failover) {
    const failMs = lognormal(rand, 15, 0.5);
    attempts.push({
      upstream: u.name,
      startedAt: iso(startedAt),
      ms: failMs,
      phase: 'connecting',
      reply: null,
      error: { code: sc.failover.code, cause: sc.failover.cause, message: `connect ${sc.failover.cause} ${u.host}:${u.port}` },
      class: sc.failover.cls,
    });
    startedAt += failMs;
    deciding = UPSTREAMS.backup;
  }
  const rcpt = [];
  let upstreamReply = null;
  let clientReply;
  let failure = null;
  let outcome = sc.outcome;
  const okText = `Ok: queued as ${queueId}`;
  const attemptMs = connectMs + envelopeMs + dataMs;
  if (outcome === 'delivered') {
    for (const t of to) rcpt.push({ to: t, status: 'accepted', reply: null });
    upstreamReply = { code: 250, enhanced: null, text: okText, phase: 'data' };
    attempts.push({
      upstream: deciding.name,
      startedAt: iso(startedAt),
      ms: attemptMs,
      phase: 'done',
      reply: { code: 250, enhanced: null, text: okText },
      error: null,
      class: null,
    });
    clientReply = { code: 250, enhanced: '2.0.0', text: `Ok: relayed as ${queueId} (id ${id})` };
  } else if (sc.partial) {
    if (to.length < 2) to.push(address(recipientDomains, pickRecipientDomain));
    to.forEach((t, i) =>
      rcpt.push(
        i === to.length - 1
          ? { to: t, status: 'rejected', reply: { code: 550, enhanced: '5.1.1', text: `<${t}>: Recipient address rejected: User unknown` } }
          : { to: t, status: 'accepted', reply: null },
      ),
    );
    upstreamReply = { code: 250, enhanced: null, text: okText, phase: 'data' };
    attempts.push({
      upstream: deciding.name,
      startedAt: iso(startedAt),
      ms: attemptMs,
      phase: 'done',
      reply: { code: 250, enhanced: null, text: okText },
      error: null,
      class: 'recipient_rejected',
    });
    clientReply = { code: 250, enhanced: '2.0.0', text: `Ok: relayed as ${queueId} (id ${id})` };
    failure = failureOf(sc, null);
  } else if (outcome === 'aborted') {
    for (const t of to) rcpt.push({ to: t, status: 'deferred', reply: null });
    clientReply = { code: 0, enhanced: null, text: '' };
    failure = failureOf(sc, 'client disconnected during DATA');
    return finish();
  } else {
    const reply = sc.reply ? { code: sc.reply[0], enhanced: sc.reply[1], text: fill(sc.reply[2], to[0]) } : null;
    const status = outcome === 'unknown' ? 'unknown' : outcome === 'rejected' ? 'rejected' : 'deferred';
    for (const t of to)
      rcpt.push({
        to: t,
        status,
        reply: sc.replyPhase === 'rcpt' && reply ? { code: reply.code, enhanced: reply.enhanced, text: fill(sc.reply[2], t) } : null,
      });
    upstreamReply = reply ? { ...reply, phase: sc.replyPhase } : null;
    const error = reply
      ? null
      : { code: sc.code, cause: sc.cause ?? null, message: sc.timeoutType ? 'Greeting never received' : 'Connection closed unexpectedly' };
    attempts.push({
      upstream: deciding.name,
      startedAt: iso(startedAt),
      ms: attemptMs,
      phase: sc.phase,
      reply: reply ? { code: reply.code, enhanced: reply.enhanced, text: reply.text } : null,
      error,
      class: sc.cls,
    });
    clientReply = { code: sc.client[0], enhanced: sc.client[1], text: `${fill(sc.client[2], to[0])} (id ${id})` };
    failure = failureOf(sc, reply ? `${reply.code} ${reply.text}` : error.message);
  }
  return finish();

  function finish() {
    const noUpstream = outcome === 'aborted';
    return {
      v: 1,
      type: 'relay',
      time: iso(time),
      id,
      session: { id: sessionId, txn },
      client,
      from,
      rcpt,
      message,
      route: noUpstream ? null : 'default',
      upstream: noUpstream
        ? null
        : {
            name: deciding.name,
            host: deciding.host,
            port: deciding.port,
            tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', authorized: true },
            reusedConnection: reused,
            queueId: outcome === 'delivered' || outcome === 'partial' ? queueId : null,
          },
      attempts: noUpstream ? [] : attempts,
      upstreamReply: noUpstream ? null : upstreamReply,
      clientReply,
      outcome,
      failure,
      timing: noUpstream
        ? { totalMs: receiveMs, receiveMs, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 }
        : {
            totalMs: receiveMs + waitMs + connectMs + envelopeMs + dataMs + (attempts.length > 1 ? attempts[0].ms : 0),
            receiveMs,
            waitMs,
            connectMs,
            envelopeMs,
            dataMs,
          },
      duplicateRisk: outcome === 'unknown',
      duplicateOf: prior ? prior.id : null,
    };
  }
}

/**
 * A message in spool mode: its `queued` relay record, then its delivery attempts, the verdict the
 * scenario drew first (`record` as relayed), one retry after a deferral or an unknown outcome, and
 * the `spool` record of its end. All at the acceptance's time.
 */
function* spoolStory(record, time, rand) {
  const iso = (ms) => new Date(ms).toISOString();
  const spoolId = record.id;
  yield {
    ...record,
    rcpt: record.rcpt.map((r) => ({ to: r.to, status: 'queued', reply: null })),
    route: null,
    upstream: null,
    attempts: [],
    upstreamReply: null,
    clientReply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${spoolId} (id ${spoolId})` },
    outcome: 'queued',
    failure: null,
    timing: { totalMs: record.timing.receiveMs, receiveMs: record.timing.receiveMs, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 },
    duplicateRisk: false,
    spool: { mode: 'spool', reason: 'spool mode' },
  };
  const delivery = (attempt, from, next) => ({
    v: 1,
    type: 'delivery',
    time: iso(time),
    id: ulid(time, rand),
    spoolId,
    attempt,
    route: from.route,
    upstream: from.upstream,
    attempts: from.attempts,
    upstreamReply: from.upstreamReply,
    rcpt: from.rcpt,
    outcome: from.outcome,
    failure: from.failure,
    next,
    timing: {
      totalMs: from.timing.waitMs + from.timing.connectMs + from.timing.envelopeMs + from.timing.dataMs,
      waitMs: from.timing.waitMs,
      connectMs: from.timing.connectMs,
      envelopeMs: from.timing.envelopeMs,
      dataMs: from.timing.dataMs,
    },
    duplicateRisk: from.outcome === 'unknown',
  });
  const end = (event, dsn) => ({
    v: 1,
    type: 'spool',
    time: iso(time),
    id: ulid(time, rand),
    spoolId,
    event,
    upstream: null,
    reason: event === 'bounced' ? `${record.failure?.class ?? 'refused'}: refused for good` : null,
    by: null,
    dsn: dsn ? { id: ulid(time, rand) } : null,
  });
  const outcome = record.outcome;
  if (outcome === 'delivered' || outcome === 'partial') {
    yield delivery(1, record, { action: 'end', at: null });
    yield end('delivered', false);
  } else if (outcome === 'rejected') {
    yield delivery(1, record, { action: 'end', at: null });
    yield end('bounced', record.from !== '');
  } else {
    yield delivery(1, record, { action: 'retry', at: iso(time + 300_000) });
    const last = record.attempts[record.attempts.length - 1];
    const ok = { code: 250, enhanced: null, text: 'Ok' };
    const delivered = {
      ...record,
      rcpt: record.rcpt.map((r) => ({ to: r.to, status: 'accepted', reply: null })),
      attempts: [{ ...last, phase: 'done', reply: ok, error: null, class: null }],
      upstreamReply: { ...ok, phase: 'data' },
      outcome: 'delivered',
      failure: null,
    };
    if (rand() < 0.9) {
      yield delivery(2, delivered, { action: 'end', at: null });
      yield end('delivered', false);
    } else {
      yield end('expired', record.from !== '');
    }
  }
}

function failureOf(sc, message) {
  return {
    class: sc.cls,
    retryable: sc.retryable,
    actor: sc.actor,
    scope: sc.scope,
    detail: { rule: sc.rule, code: sc.code, cause: sc.cause ?? null, timeoutType: sc.timeoutType ?? null, message },
  };
}

/** Writes the trail to `file` (gzip-compressed with `gzip`); resolves with the number of bytes. */
export async function writeTrail(file, opts = {}, gzip = false) {
  const BATCH = 4 * 1024 * 1024;
  let pending = [];
  let size = 0;
  let total = 0;
  if (gzip) {
    const out = createGzip();
    const done = new Promise((resolve, reject) => out.pipe(createWriteStream(file)).on('finish', resolve).on('error', reject));
    for (const sealed of sealedRecords(opts)) {
      const line = sealed.line + '\n';
      total += line.length;
      if (!out.write(line)) await new Promise((res) => out.once('drain', res));
    }
    out.end();
    await done;
    return total;
  }
  const fd = openSync(file, 'w');
  try {
    for (const sealed of sealedRecords(opts)) {
      const line = sealed.line + '\n';
      pending.push(line);
      size += line.length;
      if (size >= BATCH) {
        total += writeSync(fd, pending.join(''));
        pending = [];
        size = 0;
      }
    }
    if (pending.length > 0) total += writeSync(fd, pending.join(''));
  } finally {
    closeSync(fd);
  }
  return total;
}

function parseCli(argv) {
  const opts = { records: 1_000_000, seed: 1, start: Date.parse('2026-11-25T00:00:00Z'), perSecond: 8, chain: true };
  let gzip = false;
  let out = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--records') opts.records = Number(next());
    else if (a === '--seed') opts.seed = Number(next());
    else if (a === '--start') opts.start = Date.parse(next());
    else if (a === '--per-second') opts.perSecond = Number(next());
    else if (a === '--gzip') gzip = true;
    else if (a === '--no-chain') opts.chain = false;
    else if (!a.startsWith('-') && out === null) out = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out) throw new Error('usage: node bench/make-trail.mjs OUT [--records N] [--seed N] [--start ISO] [--per-second N] [--gzip] [--no-chain]');
  return { out, opts, gzip };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { out, opts, gzip } = parseCli(process.argv.slice(2));
  const t0 = performance.now();
  const bytes = await writeTrail(out, opts, gzip);
  const s = (performance.now() - t0) / 1000;
  process.stdout.write(
    `${opts.records.toLocaleString('en-US')} records, ${(bytes / 1024 / 1024).toFixed(0)} MB of JSON${gzip ? ' (gzip-compressed)' : ''} in ${s.toFixed(1)} s → ${out}\n`,
  );
}
