/**
 * The daemon's one way to replace a file: write a temp file, rename it over
 * the target. Readers (and a daemon restarted after a crash) see the old
 * file or the new one, never half of either.
 *
 * The rule for fsync, by what must survive a host crash (power loss,
 * kernel panic), not just a daemon crash:
 *
 * - `durable` (fsync the file, rename, fsync the directory): files under the
 *   state dir that describe something a reboot does not undo, or that the
 *   user asked us to keep. Pod records (recovery must find a pod to release
 *   its CNI addresses), the image store's state file, the CNI cache (DEL
 *   needs it to free addresses host-local keeps on disk), checkpoint
 *   archives (the user's data). The store's blobs are written `atomic` and
 *   synced before the state file names them (image-store/blobs.ts).
 * - `atomic` (rename only): files whose subject dies with the host, or that
 *   are rewritten from scratch at start-up, so losing the last write to a
 *   host crash costs nothing. Container records (a container does not
 *   outlive a reboot, and recovery releases what it held; fsyncing them cost
 *   13% of container start), everything under the run dir (tmpfs: gone at
 *   reboot, e.g. bundles' config.json and pod /etc files), the infra rootfs
 *   programs (compared and rewritten at every start), the runsc features
 *   cache (probed again when missing), `install`'s unit file (rewritten on
 *   every run; systemd reads it only after daemon-reload).
 *
 * Temp names carry the pid and random bytes, so two writers of one target
 * (in this daemon or another) never share a temp file.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export type Durability = 'durable' | 'atomic';

export interface AtomicWriteOptions {
  durability: Durability;
  /** Mode of the new file (default 0o644). */
  mode?: number;
  /**
   * Where the temp file goes (default: beside the target). Must be on the
   * target's file system; a store with its own temp dir cleans it at start.
   */
  tmpDir?: string;
}

/** The marker every temp name carries, so a loader can recognise and remove leftovers of a crash. */
const TEMP_MARKER = '.tmp-';

/** True for a temp file an interrupted atomic write left behind. */
export function isAtomicWriteTemp(name: string): boolean {
  return name.includes(TEMP_MARKER);
}

function tempPath(target: string, tmpDir: string | undefined): string {
  const name = `${basename(target)}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`;
  return join(tmpDir ?? dirname(target), name);
}

/**
 * Replaces `target` with whatever `write` puts at the temp path it is given
 * (a stream, a tar, bytes); `write` creates the file itself. On failure the
 * temp file is removed and the target is untouched.
 */
export async function replaceFileAtomic(target: string, write: (tmp: string) => Promise<void>, opts: AtomicWriteOptions): Promise<void> {
  await replace(target, async (tmp) => {
    await write(tmp);
    if (opts.durability === 'durable') await fsyncPath(tmp, 'r+');
  }, opts);
}

/** Replaces `target` with `data` (see replaceFileAtomic). */
export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicWriteOptions): Promise<void> {
  if (opts.durability === 'atomic') {
    writeFileAtomicNow(target, data, opts);
    return;
  }
  await replace(target, async (tmp) => {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      // The umask may have narrowed the mode open() asked for.
      if (opts.mode !== undefined) await fh.chmod(opts.mode);
      if (opts.durability === 'durable') await fh.sync();
    } finally {
      await fh.close();
    }
  }, opts);
}

/**
 * An atomic write without fsync is four system calls that only touch the
 * page cache: made directly they hold the event loop for a fraction of a
 * millisecond, where the same calls through the threadpool took about 2 ms
 * of round trips between threads (CreateContainer writes its record twice,
 * StartContainer once).
 */
function writeFileAtomicNow(target: string, data: string | Uint8Array, opts: AtomicWriteOptions): void {
  const tmp = tempPath(target, opts.tmpDir);
  try {
    writeFileSync(tmp, data, { flag: 'wx', mode: opts.mode ?? 0o644 });
    // The umask may have narrowed the mode open() asked for.
    if (opts.mode !== undefined) chmodSync(tmp, opts.mode);
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** `writeSynced` leaves a whole (and, when durable, fsynced) file at the temp path. */
async function replace(target: string, writeSynced: (tmp: string) => Promise<void>, opts: AtomicWriteOptions): Promise<void> {
  const tmp = tempPath(target, opts.tmpDir);
  try {
    await writeSynced(tmp);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (opts.durability === 'durable') await fsyncPath(dirname(target), 'r');
}

/** fsync of a file or directory by path ('r+' for a file some systems refuse to sync read-only). */
export async function fsyncPath(path: string, flags: 'r' | 'r+'): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
