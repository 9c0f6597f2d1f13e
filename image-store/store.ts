import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyedLock, writeFileAtomic } from '../common/index.js';
import type { RegistryConfig } from '../daemon/config.js';
import { failedPrecondition, internal, notFound, wrapError } from '../cri-api/errors.js';
import type { Logger } from '../cri-api/logger.js';
import { BlobStore } from './blobs.js';
import { chainIds, choosePlatform, hostPlatform, parseImageConfig, parseManifest, type Descriptor, type ImageConfigFile, type ImageManifest, type OciImageConfig, type Platform } from './manifest.js';
import { formatReference, parseReference, repositoryName, type ImageReference } from './reference.js';
import { RegistrySession, type AuthCredentials } from './registry-client.js';
import { UnsafeLayerError } from './layer-apply.js';
import { SnapshotStore } from './snapshots.js';

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

export interface ImageRecord {
  /** sha256:<config digest>. */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Bytes of config and (compressed) layers. */
  size: number;
  config: OciImageConfig;
  /** diff_ids, bottom layer first. */
  layers: string[];
  /** Chain id of the full layer stack: names the rootfs snapshot. */
  chainId: string;
  pinned: boolean;
}

/** What the store keeps per image beyond the public record: every blob and snapshot it needs. */
interface StoredImage extends ImageRecord {
  manifestDigests: string[];
  configDigest: string;
  layerDigests: string[];
  chainIds: string[];
}

interface Holder {
  imageId: string;
  chainIds: string[];
}

interface StateFile {
  version: 1;
  images: StoredImage[];
  holders: Record<string, Holder>;
}

const STATE_FILE = 'state.json';
const HEX_PREFIX = /^(?:sha256:)?([a-f0-9]{12,64})$/;
const PROGRESS_LOG_INTERVAL_MS = 5000;

const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Runs `fn` over `items` with at most `limit` at once; the first failure fails the whole. */
async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Waits for `work`, or rejects as soon as `signal` aborts (the work itself goes on for others). */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A pull shared by every caller asking for the same reference; cancelled when all of them gave up. */
interface SharedPull {
  promise: Promise<ImageRecord>;
  controller: AbortController;
  waiters: number;
}

/**
 * Images pulled from registries: blobs by digest, unpacked snapshots by
 * chain id, records in one state file rewritten atomically. Every change of
 * records runs under one lock; downloads and unpacking run outside it, and
 * what they produce is protected from garbage collection until recorded.
 */
export class ImageStore {
  private readonly dir: string;
  private readonly tmpDir: string;
  private readonly blobs: BlobStore;
  private readonly snapshots: SnapshotStore;
  private readonly logger: Logger;
  private readonly platform: Platform;
  private images = new Map<string, StoredImage>();
  private holders = new Map<string, Holder>();
  /** One key: every change of records (and GC) runs alone. */
  private readonly lock = new KeyedLock();
  private readonly pulls = new Map<string, SharedPull>();
  private readonly blobDownloads = new Map<string, { promise: Promise<void>; signal: AbortSignal }>();
  private readonly snapshotBuilds = new Map<string, Promise<void>>();
  /** Blobs and snapshots of pulls in progress: not yet referenced by a record, not garbage. */
  private readonly inUse = new Map<string, number>();

  private constructor(private readonly opts: ImageStoreOptions) {
    this.dir = join(opts.stateDir, 'images');
    this.tmpDir = join(this.dir, 'tmp');
    this.logger = opts.logger.child({ module: 'image-store' });
    this.blobs = new BlobStore(join(this.dir, 'blobs'), this.tmpDir);
    this.snapshots = new SnapshotStore(join(this.dir, 'snapshots'), this.tmpDir, this.logger);
    this.platform = opts.platform ?? hostPlatform();
  }

  /** Opens the store: reloads records, drops leftovers of interrupted pulls and unreferenced data. */
  static async open(opts: ImageStoreOptions): Promise<ImageStore> {
    const store = new ImageStore(opts);
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    await store.blobs.init();
    await store.snapshots.init();
    await store.load();
    await store.locked(() => store.collectGarbage());
    store.logger.info({ images: store.images.size, holders: store.holders.size }, 'image store opened');
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
      const promise = this.doPull(parsed, name, auth, controller.signal)
        .catch((err: unknown) => {
          throw wrapError(err, `pull image "${name}"`);
        })
        .finally(() => {
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
    const stored = this.find(refOrId);
    return stored ? publicRecord(stored) : undefined;
  }

  list(filterRef?: string): ImageRecord[] {
    if (filterRef) {
      const one = this.resolve(filterRef);
      return one ? [one] : [];
    }
    return [...this.images.values()].map(publicRecord);
  }

  /** Removes an image, or only one tag of it when it has several; unknown images are a no-op. */
  async remove(refOrId: string): Promise<void> {
    await this.locked(async () => {
      const image = this.find(refOrId);
      if (!image) return;
      const tag = this.tagOf(refOrId);
      if (tag && image.repoTags.includes(tag) && image.repoTags.length > 1) {
        image.repoTags = image.repoTags.filter((t) => t !== tag);
        await this.persist();
        this.logger.info({ image: image.id, tag }, 'image untagged');
        return;
      }
      this.images.delete(image.id);
      await this.persist();
      this.logger.info({ image: image.id, tags: image.repoTags }, 'image removed');
      await this.collectGarbage();
    });
  }

  /** The read-only rootfs directory of an image (rebuilt from its blobs if it went missing). */
  async rootfs(imageId: string): Promise<string> {
    const image = this.find(imageId);
    if (!image) {
      const held = [...this.holders.values()].find((h) => h.imageId === imageId);
      if (held && (await this.snapshots.has(held.chainIds[held.chainIds.length - 1]))) return this.snapshots.path(held.chainIds[held.chainIds.length - 1]);
      throw notFound(`image "${imageId}" not found`);
    }
    if (!(await this.snapshots.has(image.chainId))) {
      const ids = this.protect([...image.layerDigests, ...image.chainIds]);
      try {
        for (const d of image.layerDigests) {
          if (!(await this.blobs.has(d))) throw failedPrecondition(`rootfs of image ${image.id}: layer ${d} is missing from the store; pull the image again`);
        }
        await this.unpack(image.layers.map((diffId, i) => ({ diffId, digest: image.layerDigests[i] })), image.id);
      } finally {
        this.unprotect(ids);
      }
    }
    return this.snapshots.path(image.chainId);
  }

  /** Marks the image's snapshots as used by `holder` (a container): they outlive RemoveImage until released. */
  async acquire(imageId: string, holder: string): Promise<void> {
    await this.locked(async () => {
      const image = this.find(imageId);
      if (!image) throw notFound(`image "${imageId}" not found`);
      this.holders.set(holder, { imageId: image.id, chainIds: image.chainIds });
      await this.persist();
    });
  }

  /** Everyone holding an image's snapshots, so a restarted runtime can let go of holders it no longer knows. */
  holderIds(): string[] {
    return [...this.holders.keys()];
  }

  async release(holder: string): Promise<void> {
    await this.locked(async () => {
      if (!this.holders.delete(holder)) return;
      await this.persist();
      await this.collectGarbage();
    });
  }

  /** The whole image config JSON (for verbose ImageStatus). */
  async configJson(imageId: string): Promise<string> {
    const image = this.find(imageId);
    if (!image) throw notFound(`image "${imageId}" not found`);
    return (await this.blobs.read(image.configDigest)).toString('utf8');
  }

  /** Usage of the image file system; hard-linked files count once. */
  async fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number; timestampNs: bigint }> {
    const timestampNs = BigInt(Date.now()) * 1_000_000n;
    const seen = new Set<string>();
    let usedBytes = 0;
    const walk = async (path: string): Promise<void> => {
      let st;
      try {
        st = await lstat(path);
      } catch {
        return; // removed while walking
      }
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
      usedBytes += st.blocks * 512;
      if (!st.isDirectory()) return;
      let names: string[] = [];
      try {
        names = await readdir(path);
      } catch {
        return;
      }
      for (const n of names) await walk(join(path, n));
    };
    await walk(this.dir);
    return { mountpoint: this.dir, usedBytes, inodesUsed: seen.size, timestampNs };
  }

  // ---------------------------------------------------------------- pulling

  private async doPull(ref: ImageReference, name: string, auth: AuthCredentials | undefined, signal: AbortSignal): Promise<ImageRecord> {
    const started = Date.now();
    const log = this.logger.child({ image: name });
    const session = new RegistrySession(ref, auth, { registries: this.opts.registries, idleTimeoutMs: this.opts.pullProgressTimeoutMs, logger: log });
    const held: string[] = [];
    const hold = (ids: string[]): void => {
      held.push(...this.protect(ids));
    };
    try {
      const top = await this.manifest(session, ref.digest ?? ref.tag ?? 'latest', signal, hold);
      let manifest = top.parsed;
      const manifestDigests = [top.digest];
      if (manifest.kind === 'index') {
        const chosen = choosePlatform(manifest, this.platform, `image "${name}"`);
        const platformManifest = await this.manifest(session, chosen.digest, signal, hold);
        manifestDigests.push(platformManifest.digest);
        if (platformManifest.parsed.kind !== 'manifest') throw failedPrecondition(`image "${name}": index entry ${chosen.digest} is itself an index`);
        manifest = platformManifest.parsed;
      }
      const m: ImageManifest = manifest;
      if (m.layers.length === 0) throw failedPrecondition(`image "${name}" has no layers`);

      hold([m.config.digest, ...m.layers.map((l) => l.digest)]);
      await this.fetchBlob(session, m.config, signal, log);
      const configFile = parseImageConfig(await this.blobs.read(m.config.digest), m.layers.length, `image "${name}" config ${m.config.digest}`);
      const diffIds = configFile.rootfs.diff_ids;
      const chains = chainIds(diffIds, sha256hex);
      hold(chains);

      // Aborts the sibling downloads as soon as one fails.
      const layersDone = new AbortController();
      const layerSignal = AbortSignal.any([signal, layersDone.signal]);
      try {
        await mapLimit(m.layers, this.opts.maxConcurrentDownloads, (l) => this.fetchBlob(session, l, layerSignal, log));
      } catch (err) {
        layersDone.abort(err);
        throw err;
      }
      await this.unpack(diffIds.map((diffId, i) => ({ diffId, digest: m.layers[i].digest })), name);

      const record = await this.locked(async () => {
        const image = this.record(ref, name, top.digest, manifestDigests, m, configFile, chains);
        await this.persist();
        return publicRecord(image);
      });
      log.info({ id: record.id, layers: m.layers.length, size: record.size, ms: Date.now() - started }, 'image pulled');
      return record;
    } finally {
      this.unprotect(held);
    }
  }

  /** A manifest from the local store when asked by digest and present, else from the registry (then kept). */
  private async manifest(session: RegistrySession, reference: string, signal: AbortSignal, hold: (ids: string[]) => void): Promise<{ digest: string; parsed: ReturnType<typeof parseManifest> }> {
    const what = `manifest ${reference}`;
    if (reference.startsWith('sha256:')) hold([reference]);
    if (reference.startsWith('sha256:') && (await this.blobs.has(reference))) {
      return { digest: reference, parsed: parseManifest(await this.blobs.read(reference), undefined, what) };
    }
    const fetched = await session.getManifest(reference, signal);
    const parsed = parseManifest(fetched.bytes, fetched.contentType, what);
    if (fetched.digest !== reference) hold([fetched.digest]);
    await this.blobs.putBytes(fetched.digest, fetched.bytes, what);
    return { digest: fetched.digest, parsed };
  }

  /** Downloads a blob unless present; concurrent requests for one digest share one download. */
  private async fetchBlob(session: RegistrySession, desc: Descriptor, signal: AbortSignal, log: Logger): Promise<void> {
    if (await this.blobs.has(desc.digest)) return;
    let download = this.blobDownloads.get(desc.digest);
    if (!download) {
      const mine = { promise: this.download(session, desc, signal, log), signal };
      mine.promise = mine.promise.finally(() => {
        if (this.blobDownloads.get(desc.digest) === mine) this.blobDownloads.delete(desc.digest);
      });
      this.blobDownloads.set(desc.digest, mine);
      download = mine;
    }
    try {
      await raceAbort(download.promise, signal);
    } catch (err) {
      // Another pull's download was cancelled under us: this pull still wants the blob.
      if (download.signal !== signal && download.signal.aborted && !signal.aborted) {
        if (this.blobDownloads.get(desc.digest) === download) this.blobDownloads.delete(desc.digest);
        return this.fetchBlob(session, desc, signal, log);
      }
      throw err;
    }
  }

  private async download(session: RegistrySession, desc: Descriptor, signal: AbortSignal, log: Logger): Promise<void> {
    const what = `blob ${desc.digest}`;
    const started = Date.now();
    let received = 0;
    let lastLog = started;
    const res = await session.openBlob(desc.digest, signal);
    await this.blobs.ingest(desc.digest, desc.size, res.body, what, (n) => {
      received += n;
      if (Date.now() - lastLog >= PROGRESS_LOG_INTERVAL_MS) {
        lastLog = Date.now();
        log.info({ blob: desc.digest, received, size: desc.size }, 'downloading');
      }
    });
    log.info({ blob: desc.digest, size: desc.size, ms: Date.now() - started }, 'blob downloaded');
  }

  /** Builds every missing snapshot of a layer chain, bottom up; concurrent builds of one chain id are shared. */
  private async unpack(layers: { diffId: string; digest: string }[], what: string): Promise<void> {
    const chains = chainIds(layers.map((l) => l.diffId), sha256hex);
    for (let i = 0; i < layers.length; i++) {
      const chain = chains[i];
      if (await this.snapshots.has(chain)) continue;
      let build = this.snapshotBuilds.get(chain);
      if (!build) {
        const started = Date.now();
        build = this.snapshots
          .build(chain, i > 0 ? chains[i - 1] : undefined, this.blobs.path(layers[i].digest), layers[i].diffId)
          .then(() => this.logger.debug({ image: what, layer: layers[i].digest, ms: Date.now() - started }, 'layer unpacked'))
          .catch((err: unknown) => {
            if (err instanceof UnsafeLayerError) throw failedPrecondition(`layer ${layers[i].digest} refused: ${err.message}`);
            throw wrapError(err, `unpack layer ${layers[i].digest}`);
          })
          .finally(() => this.snapshotBuilds.delete(chain));
        this.snapshotBuilds.set(chain, build);
      }
      await build;
    }
  }

  /** Creates or updates the record of a pulled image; the tag moves here from any other image. Under the lock. */
  private record(ref: ImageReference, name: string, topDigest: string, manifestDigests: string[], m: ImageManifest, configFile: ImageConfigFile, chains: string[]): StoredImage {
    const id = m.config.digest;
    let image = this.images.get(id);
    if (!image) {
      image = {
        id,
        repoTags: [],
        repoDigests: [],
        size: m.config.size + m.layers.reduce((sum, l) => sum + l.size, 0),
        config: configFile.config ?? {},
        layers: configFile.rootfs.diff_ids,
        chainId: chains[chains.length - 1],
        pinned: false,
        manifestDigests: [],
        configDigest: m.config.digest,
        layerDigests: m.layers.map((l) => l.digest),
        chainIds: chains,
      };
      this.images.set(id, image);
    }
    if (ref.tag) {
      for (const other of this.images.values()) {
        if (other !== image) other.repoTags = other.repoTags.filter((t) => t !== name);
      }
      if (!image.repoTags.includes(name)) image.repoTags.push(name);
    }
    const repoDigest = `${repositoryName(ref)}@${topDigest}`;
    if (!image.repoDigests.includes(repoDigest)) image.repoDigests.push(repoDigest);
    for (const d of manifestDigests) if (!image.manifestDigests.includes(d)) image.manifestDigests.push(d);
    return image;
  }

  // ------------------------------------------------------------ lookup

  private find(refOrId: string): StoredImage | undefined {
    const hex = HEX_PREFIX.exec(refOrId);
    if (hex) {
      const matches = [...this.images.values()].filter((i) => i.id.slice('sha256:'.length).startsWith(hex[1]));
      if (matches.length === 1) return matches[0];
      if (hex[1].length === 64 || refOrId.startsWith('sha256:')) return undefined;
    }
    let ref: ImageReference;
    try {
      ref = parseReference(refOrId);
    } catch {
      return undefined;
    }
    const name = formatReference(ref);
    for (const image of this.images.values()) {
      if (ref.digest ? image.repoDigests.includes(name) : image.repoTags.includes(name)) return image;
    }
    return undefined;
  }

  /** The normalized tag `refOrId` names, if it is a tag reference. */
  private tagOf(refOrId: string): string | undefined {
    if (HEX_PREFIX.test(refOrId)) return undefined;
    try {
      const ref = parseReference(refOrId);
      return ref.digest ? undefined : formatReference(ref);
    } catch {
      return undefined;
    }
  }

  // ------------------------------------------------------------ persistence and GC

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run('records', fn);
  }

  private protect(ids: string[]): string[] {
    for (const id of ids) this.inUse.set(id, (this.inUse.get(id) ?? 0) + 1);
    return ids;
  }

  private unprotect(ids: string[]): void {
    for (const id of ids) {
      const n = (this.inUse.get(id) ?? 1) - 1;
      if (n <= 0) this.inUse.delete(id);
      else this.inUse.set(id, n);
    }
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(join(this.dir, STATE_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw internal(`image store: reading ${STATE_FILE}`, err);
    }
    let state: StateFile;
    try {
      state = JSON.parse(text) as StateFile;
    } catch (err) {
      throw internal(`image store: ${join(this.dir, STATE_FILE)} is not valid JSON`, err);
    }
    if (state.version !== 1) throw internal(`image store: ${STATE_FILE} has unknown version ${String(state.version)}`);
    this.images = new Map(state.images.map((i) => [i.id, i]));
    this.holders = new Map(Object.entries(state.holders));
  }

  /** Durable (common/atomic-write.ts): the state file is always whole, and survives a host crash. Under the lock. */
  private async persist(): Promise<void> {
    const state: StateFile = { version: 1, images: [...this.images.values()], holders: Object.fromEntries(this.holders) };
    await writeFileAtomic(join(this.dir, STATE_FILE), JSON.stringify(state), { durability: 'durable', mode: 0o600, tmpDir: this.tmpDir });
  }

  /**
   * Deletes blobs and snapshots no image, holder or pull in progress refers
   * to. Under the lock; pulls are not, so their protections are checked
   * right before each deletion.
   */
  private async collectGarbage(): Promise<void> {
    const keep = new Set<string>();
    for (const image of this.images.values()) {
      for (const d of [...image.manifestDigests, image.configDigest, ...image.layerDigests, ...image.chainIds]) keep.add(d);
    }
    for (const holder of this.holders.values()) for (const c of holder.chainIds) keep.add(c);
    const garbage = (id: string): boolean => !keep.has(id) && !this.inUse.has(id);
    let blobs = 0;
    let snapshots = 0;
    for (const name of await readdir(join(this.dir, 'blobs', 'sha256'))) {
      if (!garbage(`sha256:${name}`)) continue;
      await rm(join(this.dir, 'blobs', 'sha256', name), { force: true });
      blobs++;
    }
    for (const chain of await this.snapshots.list()) {
      if (!garbage(chain)) continue;
      await this.snapshots.remove(chain);
      snapshots++;
    }
    if (blobs + snapshots > 0) this.logger.info({ blobs, snapshots }, 'garbage collected');
  }
}

function publicRecord(s: StoredImage): ImageRecord {
  return {
    id: s.id,
    repoTags: [...s.repoTags],
    repoDigests: [...s.repoDigests],
    size: s.size,
    config: s.config,
    layers: [...s.layers],
    chainId: s.chainId,
    pinned: s.pinned,
  };
}
