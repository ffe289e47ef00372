/**
 * The console's pages: the single-page app built into `dist/console/` (its `index.html` and its
 * `assets/`), served for `/` and for every `/messages/<id>` (a message's page is a deep link into the
 * same app). Only those two names are served from the folder, which also holds the server's own
 * compiled code. Without a built app, a short page says so (the JSON API works regardless).
 */
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface StaticReply {
  readonly status: number;
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
}

const TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** The pages may load only what this server serves; no framing (clickjacking), no inline script. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mailtrail</title></head>
<body><h1>mailtrail</h1><p>The console's pages are not built (<code>npm run build</code> builds them into dist/console/).
The JSON API is at <code>/api/v1/</code> (docs/api.md).</p></body></html>
`;

/** A safe file name under assets/: no separators, no dot files. */
const ASSET = /^\/assets\/((?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*)$/;

export class StaticFiles {
  readonly #dir: string;

  /**
   * `dir`: the built app; by default the package's dist/console/, found from this file whether it
   * runs compiled (dist/console/static-files.js) or from its source (src/console/static-files.ts,
   * as the tests run it): both are two folders below the package's root.
   */
  constructor(dir: string = fileURLToPath(new URL('../../dist/console/', import.meta.url))) {
    this.#dir = dir;
  }

  /** Whether `path` is one of the app's: `/`, `/messages/...`, `/assets/...`. */
  serves(path: string): boolean {
    return path === '/' || path === '/index.html' || path.startsWith('/messages/') || path.startsWith('/assets/');
  }

  async reply(path: string): Promise<StaticReply> {
    const asset = ASSET.exec(path);
    if (path.startsWith('/assets/')) {
      if (!asset || asset[1]!.split('/').some((s) => s === '..')) return notFound();
      const body = await readFile(join(this.#dir, 'assets', asset[1]!)).catch(() => null);
      if (body === null) return notFound();
      // Vite names assets by their content hash: a name never changes content.
      return {
        status: 200,
        body,
        headers: {
          ...PAGE_HEADERS,
          'content-type': TYPES[extname(asset[1]!)] ?? 'application/octet-stream',
          'cache-control': 'public, max-age=31536000, immutable',
        },
      };
    }
    const page = await readFile(join(this.#dir, 'index.html')).catch(() => null);
    return { status: 200, body: page ?? Buffer.from(NOT_BUILT), headers: { ...PAGE_HEADERS, 'content-type': TYPES['.html']!, 'cache-control': 'no-cache' } };
  }
}

function notFound(): StaticReply {
  return { status: 404, body: Buffer.from('not found\n'), headers: { ...PAGE_HEADERS, 'content-type': TYPES['.txt']!, 'cache-control': 'no-store' } };
}
