import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../cri-api/logger.js';
import { LayerUnpacker } from './layer-unpacker.js';
import { imageLimits } from './manifest.js';

/**
 * Unpacked layer chains under `<root>/<chain id hex>`: each one a complete,
 * self-contained rootfs tree (runsc serves one directory), sharing file
 * inodes with the snapshot below it through hard links. Read-only by
 * convention: gVisor overlays container writes in memory.
 */
export class SnapshotStore {
  private readonly unpacker = new LayerUnpacker();

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
   * The tree is made in an unpack worker (layer-unpacker.ts). `budget`: see
   * applyLayer. Returns the bytes of tar unpacked.
   */
  async build(chainId: string, parent: string | undefined, blobPath: string, diffId: string, budget: number): Promise<number> {
    const tmp = join(this.tmpDir, `snap-${randomBytes(8).toString('hex')}`);
    try {
      const bytes = await this.unpacker.apply(
        { root: tmp, lower: parent === undefined ? undefined : this.path(parent), blobPath, diffId, budget, limitBytes: imageLimits().maxUnpackedBytes },
        (path, type) => this.logger.debug({ layer: diffId, path, type }, 'layer entry type not supported, skipped'),
      );
      await rename(tmp, this.path(chainId));
      return bytes;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
