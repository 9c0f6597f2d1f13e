/**
 * Garbage collection of the image store: blobs and snapshots that no image,
 * holder or pull in progress refers to. Pulls run outside the store's lock,
 * so what they have fetched but not yet recorded is marked in use.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../cri-api/logger.js';
import type { ImageRecords } from './image-records.js';
import type { SnapshotStore } from './snapshots.js';

/** Blob digests and chain ids pulls in progress need: counted, as two pulls may share one. */
export class InUse {
  private readonly counts = new Map<string, number>();

  /** Marks `ids` in use; returns them for the matching release. */
  protect(ids: string[]): string[] {
    for (const id of ids) this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    return ids;
  }

  unprotect(ids: string[]): void {
    for (const id of ids) {
      const n = (this.counts.get(id) ?? 1) - 1;
      if (n <= 0) this.counts.delete(id);
      else this.counts.set(id, n);
    }
  }

  has(id: string): boolean {
    return this.counts.has(id);
  }
}

/**
 * Deletes what nothing refers to. Under the store's lock; pulls are not,
 * so their protections are checked right before each deletion.
 */
export async function collectGarbage(records: ImageRecords, blobsDir: string, snapshots: SnapshotStore, inUse: InUse, logger: Logger): Promise<void> {
  const keep = records.referenced();
  const garbage = (id: string): boolean => !keep.has(id) && !inUse.has(id);
  let blobs = 0;
  let removed = 0;
  for (const name of await readdir(join(blobsDir, 'sha256'))) {
    if (!garbage(`sha256:${name}`)) continue;
    await rm(join(blobsDir, 'sha256', name), { force: true });
    blobs++;
  }
  for (const chain of await snapshots.list()) {
    if (!garbage(chain)) continue;
    await snapshots.remove(chain);
    removed++;
  }
  if (blobs + removed > 0) logger.info({ blobs, snapshots: removed }, 'garbage collected');
}
