import net from 'node:net';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ERR } from './error-codes.js';

/** The lock's name in the data folder. */
export const LOCK_FILE = 'mailtrail.lock';

/**
 * Bytes of a Unix socket path, NUL excluded: `sun_path` holds 108 on Linux, 104 on macOS and the BSDs.
 * Node truncates a longer path without a word, which would put the lock somewhere else.
 */
const MAX_SOCKET_PATH = process.platform === 'linux' ? 107 : 103;

/** Another live mailtrail process holds the data folder. */
export class DataDirInUseError extends Error {
  readonly code = ERR.DATA_DIR_IN_USE;

  constructor(path: string, why: string) {
    super(`another mailtrail process is using this data folder (its lock ${path} ${why}); give each process a dataDir of its own`);
  }
}

export type LockAttempt = { readonly lock: DataDirLock } | { readonly lock: null; readonly why: string };

/**
 * One mailtrail process per data folder: the trail, the open incidents and the spill files there
 * belong to one process, and start-up removes spill files it takes for leftovers of a crash.
 *
 * The lock is a Unix socket the holder listens on. The kernel closes it when the process ends, however
 * it ends (SIGKILL included), so a socket file nobody answers on is a leftover and is taken over, and
 * one that answers belongs to a live process. A pid file could not tell: pids are reused, and two
 * containers sharing a volume are often both pid 1. Through a shared volume this works across
 * containers on one host, not across hosts (a network file system carries no socket connections).
 * Two processes that start at the very same moment over a leftover could both take it over; that needs
 * a crash and a misconfiguration within the same few milliseconds.
 */
export class DataDirLock {
  readonly path: string;
  readonly #server: net.Server;

  private constructor(path: string, server: net.Server) {
    this.path = path;
    this.#server = server;
  }

  /**
   * Takes the lock of `dataDir` (which must exist). Throws DataDirInUseError when a live process holds
   * it; resolves with `lock: null` and the reason when this file system cannot hold a socket (or the
   * path is too long for one): the caller carries on without the guard and says so.
   */
  static async acquire(dataDir: string): Promise<LockAttempt> {
    const path = join(dataDir, LOCK_FILE);
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      return { lock: null, why: `the path is longer than a Unix socket path may be (${MAX_SOCKET_PATH} bytes)` };
    }
    const holder = await knock(path);
    if (holder !== null) throw new DataDirInUseError(path, holder);
    // Nobody answers: a leftover of a process that died without closing it (or nothing at all).
    await rm(path, { force: true });
    const server = net.createServer((socket) => socket.destroy());
    try {
      await listen(server, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      // Taken between our knock and our listen by a process starting at the same moment.
      if (code === 'EADDRINUSE') throw new DataDirInUseError(path, 'was taken while this process started');
      return { lock: null, why: `cannot listen on ${path} (${code})` };
    }
    // The lock never keeps the process alive on its own.
    server.unref();
    return { lock: new DataDirLock(path, server) };
  }

  /** Stops listening; Node removes the socket file. Idempotent. */
  release(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
  }
}

/**
 * Connects to the lock: null when nobody answers (no file, or a file no process listens on), else how
 * the answer went. Anything but a plain refusal (a socket we may not connect to, a full backlog) is
 * taken as a live holder: starting a second process on the folder is the worse mistake.
 */
function knock(path: string): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve('answers');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      const code = err.code ?? 'unknown error';
      resolve(code === 'ECONNREFUSED' || code === 'ENOENT' ? null : `cannot be checked: ${code}`);
    });
  });
}

function listen(server: net.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // exclusive: a cluster worker (docs/fleet.md) holds its own lock, not one the supervisor shares out.
    server.listen({ path, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
