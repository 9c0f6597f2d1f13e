/**
 * One pull's pipeline: manifest (and the platform's one of an index),
 * config, layers downloaded a few at a time, each unpacked bottom up into
 * shared snapshots as soon as its blob and the layer below are in.
 * Concurrent pulls share downloads of one blob and builds of one snapshot.
 * Runs outside the store's lock: what it fetched is marked in use until the
 * store commits the record.
 */
import { createHash } from 'node:crypto';
import { ConcurrencyLimit } from '../common/index.js';
import type { RegistryConfig } from '../daemon/config.js';
import { failedPrecondition, wrapError } from '../cri-api/errors.js';
import type { Logger } from '../cri-api/logger.js';
import type { BlobStore } from './blobs.js';
import type { InUse } from './gc.js';
import type { ImageRecord } from './image-records.js';
import { UnsafeLayerError } from './layer-apply.js';
import { chainIds, choosePlatform, imageLimits, parseImageConfig, parseManifest, type Descriptor, type ImageConfigFile, type ImageManifest, type Platform } from './manifest.js';
import type { ImageReference } from './reference.js';
import { RegistrySession, type AuthCredentials } from './registry-client.js';
import type { SnapshotStore } from './snapshots.js';

const PROGRESS_LOG_INTERVAL_MS = 5000;

export const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** What a finished pull hands the store to record. */
export interface PulledImage {
  ref: ImageReference;
  name: string;
  topDigest: string;
  manifestDigests: string[];
  manifest: ImageManifest;
  configFile: ImageConfigFile;
  chains: string[];
}

export interface PullerDeps {
  registries: Record<string, RegistryConfig>;
  maxConcurrentDownloads: number;
  pullProgressTimeoutMs: number;
  platform: Platform;
  blobs: BlobStore;
  snapshots: SnapshotStore;
  inUse: InUse;
  /** Records the pulled image (under the store's lock) and returns its public record. */
  commit: (pulled: PulledImage) => Promise<ImageRecord>;
  logger: Logger;
}

/** Starts `fn` over `items` with at most `limit` running at once; one promise per item. */
function startLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void>[] {
  const slots = new ConcurrencyLimit(limit);
  return items.map((item) => slots.run(() => fn(item)));
}

/** Waits for `work`, or rejects as soon as `signal` aborts (the work itself goes on for others). */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export class Puller {
  private readonly blobDownloads = new Map<string, { promise: Promise<void>; signal: AbortSignal }>();
  private readonly snapshotBuilds = new Map<string, Promise<number>>();

  constructor(private readonly deps: PullerDeps) {}

  async pull(ref: ImageReference, name: string, auth: AuthCredentials | undefined, signal: AbortSignal): Promise<ImageRecord> {
    const started = Date.now();
    const log = this.deps.logger.child({ image: name });
    const session = new RegistrySession(ref, auth, { registries: this.deps.registries, idleTimeoutMs: this.deps.pullProgressTimeoutMs, logger: log });
    const held: string[] = [];
    const hold = (ids: string[]): void => {
      held.push(...this.deps.inUse.protect(ids));
    };
    try {
      const top = await this.manifest(session, ref.digest ?? ref.tag ?? 'latest', signal, hold);
      let manifest = top.parsed;
      const manifestDigests = [top.digest];
      if (manifest.kind === 'index') {
        const chosen = choosePlatform(manifest, this.deps.platform, `image "${name}"`);
        const platformManifest = await this.manifest(session, chosen.digest, signal, hold);
        manifestDigests.push(platformManifest.digest);
        if (platformManifest.parsed.kind !== 'manifest') throw failedPrecondition(`image "${name}": index entry ${chosen.digest} is itself an index`);
        manifest = platformManifest.parsed;
      }
      const m: ImageManifest = manifest;
      if (m.layers.length === 0) throw failedPrecondition(`image "${name}" has no layers`);

      hold([m.config.digest, ...m.layers.map((l) => l.digest)]);
      await this.fetchBlob(session, m.config, signal, log);
      const configFile = parseImageConfig(await this.deps.blobs.read(m.config.digest), m.layers.length, `image "${name}" config ${m.config.digest}`);
      const diffIds = configFile.rootfs.diff_ids;
      const chains = chainIds(diffIds, sha256hex);
      hold(chains);

      // Aborts the sibling downloads as soon as one fails.
      const layersDone = new AbortController();
      const layerSignal = AbortSignal.any([signal, layersDone.signal]);
      const fetched = startLimited(m.layers, this.deps.maxConcurrentDownloads, (l) => this.fetchBlob(session, l, layerSignal, log));
      // Every rejection is handled here, so a later layer failing while an earlier one unpacks is not unhandled.
      for (const f of fetched) f.catch((err: unknown) => layersDone.abort(err));
      // A layer unpacks as soon as its own blob is in, while the layers above it still download.
      try {
        await this.unpack(diffIds.map((diffId, i) => ({ diffId, digest: m.layers[i].digest })), name, (i) => fetched[i]);
      } catch (err) {
        // A refused layer stops the downloads still running, and they end before the pull releases its blobs.
        layersDone.abort(err);
        await Promise.allSettled(fetched);
        throw err;
      }

      // The record is durable: so must be every blob it names.
      await this.deps.blobs.durable([...manifestDigests, m.config.digest, ...m.layers.map((l) => l.digest)]);
      const record = await this.deps.commit({ ref, name, topDigest: top.digest, manifestDigests, manifest: m, configFile, chains });
      log.info({ id: record.id, layers: m.layers.length, size: record.size, ms: Date.now() - started }, 'image pulled');
      return record;
    } finally {
      this.deps.inUse.unprotect(held);
    }
  }

  /** A manifest from the local store when asked by digest and present, else from the registry (then kept). */
  private async manifest(session: RegistrySession, reference: string, signal: AbortSignal, hold: (ids: string[]) => void): Promise<{ digest: string; parsed: ReturnType<typeof parseManifest> }> {
    const what = `manifest ${reference}`;
    if (reference.startsWith('sha256:')) hold([reference]);
    if (reference.startsWith('sha256:') && (await this.deps.blobs.has(reference))) {
      return { digest: reference, parsed: parseManifest(await this.deps.blobs.read(reference), undefined, what) };
    }
    const fetched = await session.getManifest(reference, signal);
    const parsed = parseManifest(fetched.bytes, fetched.contentType, what);
    if (fetched.digest !== reference) hold([fetched.digest]);
    await this.deps.blobs.putBytes(fetched.digest, fetched.bytes, what);
    return { digest: fetched.digest, parsed };
  }

  /** Downloads a blob unless present; concurrent requests for one digest share one download. */
  private async fetchBlob(session: RegistrySession, desc: Descriptor, signal: AbortSignal, log: Logger): Promise<void> {
    if (await this.deps.blobs.has(desc.digest)) return;
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
    const body = await session.openBlob(desc.digest, signal);
    await this.deps.blobs.ingest(desc.digest, desc.size, body, what, (n) => {
      received += n;
      if (Date.now() - lastLog >= PROGRESS_LOG_INTERVAL_MS) {
        lastLog = Date.now();
        log.info({ blob: desc.digest, received, size: desc.size }, 'downloading');
      }
    });
    log.info({ blob: desc.digest, size: desc.size, ms: Date.now() - started }, 'blob downloaded');
  }

  /**
   * Builds every missing snapshot of a layer chain, bottom up; concurrent
   * builds of one chain id are shared. The layers built here share one
   * image-max-unpacked-mib budget; a snapshot on the node already (a base
   * shared with another image) was bounded when it was built and is not
   * counted again.
   */
  async unpack(layers: { diffId: string; digest: string }[], what: string, blobReady: (i: number) => Promise<void> = async () => {}): Promise<void> {
    const chains = chainIds(layers.map((l) => l.diffId), sha256hex);
    let budget = imageLimits().maxUnpackedBytes;
    for (let i = 0; i < layers.length; i++) {
      const chain = chains[i];
      await blobReady(i);
      if (await this.deps.snapshots.has(chain)) continue;
      let build = this.snapshotBuilds.get(chain);
      if (!build) {
        const started = Date.now();
        build = this.deps.snapshots
          .build(chain, i > 0 ? chains[i - 1] : undefined, this.deps.blobs.path(layers[i].digest), layers[i].diffId, budget)
          .then((bytes) => {
            this.deps.logger.debug({ image: what, layer: layers[i].digest, bytes, ms: Date.now() - started }, 'layer unpacked');
            return bytes;
          })
          .catch((err: unknown) => {
            if (err instanceof UnsafeLayerError) throw failedPrecondition(`layer ${layers[i].digest} refused: ${err.message}`);
            throw wrapError(err, `unpack layer ${layers[i].digest}`);
          })
          .finally(() => this.snapshotBuilds.delete(chain));
        this.snapshotBuilds.set(chain, build);
      }
      budget -= await build;
    }
  }
}
