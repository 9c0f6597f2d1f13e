/**
 * Images pulled from registries: blobs by digest (blobs.ts), unpacked
 * snapshots by chain id (snapshots.ts), records in one state file
 * (image-records.ts). Every change of records runs under one lock;
 * pulls (puller.ts) download and unpack outside it, and what they produce
 * is protected from garbage collection (gc.ts) until recorded.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyedLock } from '../common/index.js';
import type { RegistryConfig } from '../daemon/config.js';
import { failedPrecondition, notFound, wrapError } from '../cri-api/errors.js';
import type { Logger } from '../cri-api/logger.js';
import { BlobStore } from './blobs.js';
import { diskUsage } from './fs-usage.js';
import { collectGarbage, InUse } from './gc.js';
import { ImageRecords, publicRecord, type ImageRecord } from './image-records.js';
import { hostPlatform, type Platform } from './manifest.js';
import { Puller, raceAbort, sha256hex } from './puller.js';
import { formatReference, parseReference } from './reference.js';
import type { AuthCredentials } from './registry-client.js';
import { SnapshotStore } from './snapshots.js';
import { markTopDir } from './top-dir.js';

export type { ImageRecord } from './image-records.js';

export interface ImageStoreOptions {
  /** Images live in `<stateDir>/images`. */
  stateDir: string;
  registries: Record<string, RegistryConfig>;
  /** Layers of one pull downloaded at once. */
  maxConcurrentDownloads: number;
  /** A download receiving no byte for this long is aborted. */
  pullProgressTimeoutMs: number;
  logger: Logger;
  /** Platform picked out of multi-arch indexes; defaults to the node's. */
  platform?: Platform;
}

/** A pull shared by every caller asking for the same reference; cancelled when all of them gave up. */
interface SharedPull {
  promise: Promise<ImageRecord>;
  controller: AbortController;
  waiters: number;
}

export class ImageStore {
  private readonly dir: string;
  private readonly tmpDir: string;
  private readonly blobs: BlobStore;
  private readonly snapshots: SnapshotStore;
  private readonly records: ImageRecords;
  private readonly inUse = new InUse();
  private readonly puller: Puller;
  private readonly logger: Logger;
  /** One key: every change of records (and GC) runs alone. */
  private readonly lock = new KeyedLock();
  private readonly pulls = new Map<string, SharedPull>();
  /** Bumped after every change to the store's files: the cached usage of an older generation is stale. */
  private generation = 0;
  private usage: { generation: number; walk: Promise<{ usedBytes: number; inodesUsed: number }> } | undefined;

  private constructor(opts: ImageStoreOptions) {
    this.dir = join(opts.stateDir, 'images');
    this.tmpDir = join(this.dir, 'tmp');
    this.logger = opts.logger.child({ module: 'image-store' });
    this.blobs = new BlobStore(join(this.dir, 'blobs'), this.tmpDir);
    this.snapshots = new SnapshotStore(join(this.dir, 'snapshots'), this.tmpDir, this.logger);
    this.records = new ImageRecords(this.dir, this.tmpDir);
    this.puller = new Puller({
      registries: opts.registries,
      maxConcurrentDownloads: opts.maxConcurrentDownloads,
      pullProgressTimeoutMs: opts.pullProgressTimeoutMs,
      platform: opts.platform ?? hostPlatform(),
      blobs: this.blobs,
      snapshots: this.snapshots,
      inUse: this.inUse,
      logger: this.logger,
      commit: (p) =>
        this.locked(async () => {
          const image = this.records.record(p.ref, p.name, p.topDigest, p.manifestDigests, p.manifest, p.configFile, p.chains);
          await this.records.persistImages();
          return publicRecord(image);
        }),
    });
  }

  /** Opens the store: reloads records, drops leftovers of interrupted pulls and unreferenced data. */
  static async open(opts: ImageStoreOptions): Promise<ImageStore> {
    const store = new ImageStore(opts);
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    // Snapshots are built in directories made here (top-dir.ts says why).
    const notMarked = await markTopDir(store.tmpDir);
    if (notMarked) store.logger.debug({ reason: notMarked }, 'snapshot builds are not spread over block groups');
    await store.blobs.init();
    await store.snapshots.init();
    await store.records.load();
    await store.locked(() => store.collectGarbage());
    store.logger.info({ images: store.records.images.size, holders: store.records.holders.size }, 'image store opened');
    return store;
  }

  normalizeRef(ref: string): string {
    return formatReference(parseReference(ref));
  }

  async pull(ref: string, auth?: AuthCredentials, signal?: AbortSignal): Promise<ImageRecord> {
    const parsed = parseReference(ref);
    const name = formatReference(parsed);
    signal?.throwIfAborted();
    // Callers with different credentials must not share each other's outcome.
    const key = `${name} ${sha256hex(JSON.stringify(auth ?? {}))}`;
    let shared = this.pulls.get(key);
    // A pull everyone gave up on is not joined: it is failing.
    if (!shared || shared.controller.signal.aborted) {
      const controller = new AbortController();
      const promise = this.puller.pull(parsed, name, auth, controller.signal)
        .catch(async (err: unknown) => {
          // A refused or failed pull leaves no blob or snapshot of its own behind (a refused layer's blob
          // included); what other pulls are using is protected from the collection.
          await this.locked(() => this.collectGarbage()).catch((gcErr: unknown) => this.logger.error({ err: gcErr, image: name }, 'collecting what a failed pull left failed'));
          throw wrapError(err, `pull image "${name}"`);
        })
        .finally(() => {
          // Done or failed, the pull has written blobs and snapshots.
          this.generation++;
          if (this.pulls.get(key) === fresh) this.pulls.delete(key);
        });
      const fresh: SharedPull = { promise, controller, waiters: 0 };
      shared = fresh;
      this.pulls.set(key, shared);
    }
    const mine = shared;
    mine.waiters++;
    const onAbort = (): void => {
      if (--mine.waiters === 0) mine.controller.abort(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await raceAbort(mine.promise, signal);
    } finally {
      if (!signal?.aborted) mine.waiters--;
      signal?.removeEventListener('abort', onAbort);
    }
  }

  resolve(refOrId: string): ImageRecord | undefined {
    const stored = this.records.find(refOrId);
    return stored ? publicRecord(stored) : undefined;
  }

  list(filterRef?: string): ImageRecord[] {
    if (filterRef) {
      const one = this.resolve(filterRef);
      return one ? [one] : [];
    }
    return [...this.records.images.values()].map(publicRecord);
  }

  /** Removes an image, or only one tag of it when it has several; unknown images are a no-op. */
  async remove(refOrId: string): Promise<void> {
    await this.locked(async () => {
      const image = this.records.find(refOrId);
      if (!image) return;
      const tag = this.records.tagOf(refOrId);
      if (tag && image.repoTags.includes(tag) && image.repoTags.length > 1) {
        image.repoTags = image.repoTags.filter((t) => t !== tag);
        await this.records.persistImages();
        this.logger.info({ image: image.id, tag }, 'image untagged');
        return;
      }
      this.records.images.delete(image.id);
      await this.records.persistImages();
      this.logger.info({ image: image.id, tags: image.repoTags }, 'image removed');
      await this.collectGarbage();
    });
  }

  /** The read-only rootfs directory of an image (rebuilt from its blobs if it went missing). */
  async rootfs(imageId: string): Promise<string> {
    const image = this.records.find(imageId);
    if (!image) {
      const held = [...this.records.holders.values()].find((h) => h.imageId === imageId);
      if (held && (await this.snapshots.has(held.chainIds[held.chainIds.length - 1]))) return this.snapshots.path(held.chainIds[held.chainIds.length - 1]);
      throw notFound(`image "${imageId}" not found`);
    }
    if (!(await this.snapshots.has(image.chainId))) {
      const ids = this.inUse.protect([...image.layerDigests, ...image.chainIds]);
      try {
        for (const d of image.layerDigests) {
          if (!(await this.blobs.has(d))) throw failedPrecondition(`rootfs of image ${image.id}: layer ${d} is missing from the store; pull the image again`);
        }
        await this.puller.unpack(image.layers.map((diffId, i) => ({ diffId, digest: image.layerDigests[i] })), image.id);
      } finally {
        this.generation++;
        this.inUse.unprotect(ids);
      }
    }
    return this.snapshots.path(image.chainId);
  }

  /** Marks the image's snapshots as used by `holder` (a container): they outlive RemoveImage until released. */
  async acquire(imageId: string, holder: string): Promise<void> {
    await this.locked(async () => {
      const image = this.records.find(imageId);
      if (!image) throw notFound(`image "${imageId}" not found`);
      this.records.holders.set(holder, { imageId: image.id, chainIds: image.chainIds });
      await this.records.persistHolders();
    });
  }

  /** Everyone holding an image's snapshots, so a restarted runtime can let go of holders it no longer knows. */
  holderIds(): string[] {
    return [...this.records.holders.keys()];
  }

  async release(holder: string): Promise<void> {
    await this.locked(async () => {
      if (!this.records.holders.delete(holder)) return;
      await this.records.persistHolders();
      await this.collectGarbage();
    });
  }

  /** The whole image config JSON (for verbose ImageStatus). */
  async configJson(imageId: string): Promise<string> {
    const image = this.records.find(imageId);
    if (!image) throw notFound(`image "${imageId}" not found`);
    return (await this.blobs.read(image.configDigest)).toString('utf8');
  }

  /**
   * Usage of the image file system; hard-linked files count once. kubelet
   * asks every few seconds and a walk of a big store is slow, so the tree is
   * walked again only after the store changed (a pull ended, or a change
   * under the records lock: commit, remove, hold, release, GC); concurrent
   * callers share one walk. A pull in progress shows once it ends.
   */
  async fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number; timestampNs: bigint }> {
    const timestampNs = BigInt(Date.now()) * 1_000_000n;
    if (this.usage?.generation !== this.generation) {
      const entry = { generation: this.generation, walk: diskUsage(this.dir) };
      this.usage = entry;
      entry.walk.catch(() => {
        if (this.usage === entry) this.usage = undefined;
      });
    }
    return { mountpoint: this.dir, ...(await this.usage.walk), timestampNs };
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run('records', async () => {
      try {
        return await fn();
      } finally {
        this.generation++;
      }
    });
  }

  /** Under the lock. */
  private async collectGarbage(): Promise<void> {
    await collectGarbage(this.records, join(this.dir, 'blobs'), this.snapshots, this.inUse, this.logger);
  }
}
