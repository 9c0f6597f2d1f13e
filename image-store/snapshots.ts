import { randomBytes } from 'node:crypto';
import { chmod, copyFile, lchown, link, lstat, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../cri-api/logger.js';
import { applyLayer } from './layer-apply.js';

/**
 * Unpacked layer chains under `<root>/<chain id hex>`: each one a complete,
 * self-contained rootfs tree (runsc serves one directory), sharing file
 * inodes with the snapshot below it through hard links. Read-only by
 * convention: gVisor overlays container writes in memory.
 */
export class SnapshotStore {
  constructor(
    private readonly root: string,
    private readonly tmpDir: string,
    private readonly logger: Logger,
  ) {}

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  path(chainId: string): string {
    return join(this.root, chainId.replace(/^sha256:/, ''));
  }

  async has(chainId: string): Promise<boolean> {
    try {
      return (await stat(this.path(chainId))).isDirectory();
    } catch {
      return false;
    }
  }

  /** Chain ids (sha256:...) of every snapshot on disk. */
  async list(): Promise<string[]> {
    return (await readdir(this.root)).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  async remove(chainId: string): Promise<void> {
    // Rename first so a half-deleted tree is never mistaken for a snapshot.
    const doomed = join(this.tmpDir, `gc-${randomBytes(8).toString('hex')}`);
    try {
      await rename(this.path(chainId), doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  /**
   * Builds the snapshot `chainId` = `parent` + the layer in `blobPath`, in a
   * temp dir renamed into place only when the whole layer applied cleanly.
   * `budget`: see applyLayer. Returns the bytes of tar unpacked.
   */
  async build(chainId: string, parent: string | undefined, blobPath: string, diffId: string, budget: number): Promise<number> {
    const tmp = join(this.tmpDir, `snap-${randomBytes(8).toString('hex')}`);
    try {
      if (parent) await linkTree(this.path(parent), tmp);
      else await mkdir(tmp, { mode: 0o755 });
      const bytes = await applyLayer(tmp, blobPath, diffId, this.logger, budget);
      await rename(tmp, this.path(chainId));
      return bytes;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}

/** `cp -al`: the same tree with fresh directories and hard-linked everything else. */
async function linkTree(src: string, dst: string): Promise<void> {
  const st = await lstat(src);
  await mkdir(dst, { mode: 0o700 });
  for (const entry of await readdir(src, { withFileTypes: true })) {
    const from = join(src, entry.name);
    const to = join(dst, entry.name);
    if (entry.isDirectory()) {
      await linkTree(from, to);
      continue;
    }
    try {
      await link(from, to);
    } catch (err) {
      // An inode at the file system's link limit gets its own copy.
      if ((err as NodeJS.ErrnoException).code !== 'EMLINK' || !entry.isFile()) throw err;
      const fst = await lstat(from);
      await copyFile(from, to);
      await lchown(to, fst.uid, fst.gid);
      await chmod(to, fst.mode & 0o7777);
      await utimes(to, fst.atime, fst.mtime);
    }
  }
  await lchown(dst, st.uid, st.gid).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPERM') throw err;
  });
  await chmod(dst, st.mode & 0o7777);
  await utimes(dst, st.atime, st.mtime);
}
