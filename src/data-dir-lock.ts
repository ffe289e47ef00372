import net from 'node:net';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ERR, type ErrorCode } from './error-codes.js';

/** A folder one process at a time may use: where its lock is, and what to call it in an error. */
export interface LockedFolder {
  /** The lock's name in the folder. */
  readonly file: string;
  /** How errors name the folder. */
  readonly what: string;
  /** The config key that names the folder. */
  readonly key: string;
  readonly code: ErrorCode;
}

/** The data folder: the trail, the open incidents and the spill files. */
export const DATA_DIR: LockedFolder = { file: 'mailtrail.lock', what: 'data folder', key: 'dataDir', code: ERR.DATA_DIR_IN_USE };

/**
 * The spool folder: locked on its own, wherever `spool.dir` is (inside the data folder or not), since
 * start-up recovery requeues and removes what it takes for a dead process's leftovers (docs/spool.md).
 */
export const SPOOL_DIR: LockedFolder = { file: 'spool.lock', what: 'spool folder', key: 'spool.dir', code: ERR.SPOOL_IN_USE };

/** The lock's name in the data folder. */
export const LOCK_FILE = DATA_DIR.file;

/**
 * Bytes of a Unix socket path, NUL excluded: `sun_path` holds 108 on Linux, 104 on macOS and the BSDs.
 * Node truncates a longer path without a word, which would put the lock somewhere else.
 */
const MAX_SOCKET_PATH = process.platform === 'linux' ? 107 : 103;

/** Another live mailtrail process holds the folder. */
export class DataDirInUseError extends Error {
  readonly code: ErrorCode;

  constructor(path: string, why: string, folder: LockedFolder = DATA_DIR) {
    super(`another mailtrail process is using this ${folder.what} (its lock ${path} ${why}); give each process a ${folder.key} of its own`);
    this.code = folder.code;
  }
}

export type LockAttempt = { readonly lock: DataDirLock } | { readonly lock: null; readonly why: string };

/**
 * One mailtrail process per data folder: the trail, the open incidents and the spill files there
 * belong to one process, and start-up removes spill files it takes for leftovers of a crash. The
 * spool folder has a lock of its own the same way (SPOOL_DIR).
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
   * Takes the lock of `dir` (which must exist). Throws DataDirInUseError when a live process holds
   * it; resolves with `lock: null` and the reason when this file system cannot hold a socket (or the
   * path is too long for one): the caller carries on without the guard and says so.
   */
  static async acquire(dir: string, folder: LockedFolder = DATA_DIR): Promise<LockAttempt> {
    const path = join(dir, folder.file);
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      return { lock: null, why: `the path is longer than a Unix socket path may be (${MAX_SOCKET_PATH} bytes)` };
    }
    const holder = await knock(path);
    if (holder !== null) throw new DataDirInUseError(path, holder, folder);
    // Nobody answers: a leftover of a process that died without closing it (or nothing at all).
    await rm(path, { force: true });
    const server = net.createServer((socket) => socket.destroy());
    try {
      await listen(server, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      // Taken between our knock and our listen by a process starting at the same moment.
      if (code === 'EADDRINUSE') throw new DataDirInUseError(path, 'was taken while this process started', folder);
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
 * Whether a live process holds the lock of `dir`: how it answered, or null when nobody does. For a
 * reader that must not act on a folder a running relay owns (it takes no lock itself).
 */
export function lockHolder(dir: string, folder: LockedFolder = DATA_DIR): Promise<string | null> {
  return knock(join(dir, folder.file));
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
