/**
 * The image store's records: every image (what CRI sees of it, plus each
 * blob and snapshot it needs) in a state file, and every holder (a
 * container using an image's snapshots) in a holders file, each rewritten
 * whole on each change. Callers hold the store's lock around changes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceFileAtomic, writeFileAtomic } from '../common/index.js';
import { internal } from '../cri-api/errors.js';
import type { ImageConfigFile, ImageManifest, OciImageConfig } from './manifest.js';
import { formatReference, parseReference, repositoryName, type ImageReference } from './reference.js';

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
export interface StoredImage extends ImageRecord {
  manifestDigests: string[];
  configDigest: string;
  layerDigests: string[];
  chainIds: string[];
}

export interface Holder {
  imageId: string;
  chainIds: string[];
}

interface StateFile {
  version: 1;
  images: StoredImage[];
  holders: Record<string, Holder>;
}

const STATE_FILE = 'state.json';
const HOLDERS_FILE = 'holders.json';
const HEX_PREFIX = /^(?:sha256:)?([a-f0-9]{12,64})$/;

export class ImageRecords {
  images = new Map<string, StoredImage>();
  holders = new Map<string, Holder>();

  /** The state file lives in `dir`; its temp files in `tmpDir` (same file system, cleaned at start). */
  constructor(
    private readonly dir: string,
    private readonly tmpDir: string,
  ) {}

  async load(): Promise<void> {
    const state = await this.readJson<StateFile>(STATE_FILE);
    if (state && state.version !== 1) throw internal(`image store: ${STATE_FILE} has unknown version ${String(state.version)}`);
    this.images = new Map((state?.images ?? []).map((i) => [i.id, i]));
    // The state file's copy of the holders counts only without a whole holders file: a store from before it, or one a host crash lost or tore.
    const holders = (await this.readJson<Record<string, Holder>>(HOLDERS_FILE).catch(() => undefined)) ?? state?.holders ?? {};
    this.holders = new Map(Object.entries(holders));
  }

  /**
   * Durable (common/atomic-write.ts): the state file is always whole, and
   * survives a host crash. It carries a copy of the holders for a daemon
   * that knows no holders file.
   */
  async persistImages(): Promise<void> {
    const state: StateFile = { version: 1, images: [...this.images.values()], holders: Object.fromEntries(this.holders) };
    await writeFileAtomic(join(this.dir, STATE_FILE), JSON.stringify(state), { durability: 'durable', mode: 0o600, tmpDir: this.tmpDir });
  }

  /**
   * Whole, not synced: holders are containers, which end with the host. A
   * host crash may lose the latest holders, but then no container of theirs
   * runs, and the runtime's recovery releases holders it does not know.
   * CreateContainer waits for this write, where an fsync took milliseconds.
   * Through the threadpool: a rename over a file on ext4 starts its
   * writeback, which took 0.4-0.6 ms of the event loop made directly.
   */
  async persistHolders(): Promise<void> {
    const data = JSON.stringify(Object.fromEntries(this.holders));
    await replaceFileAtomic(join(this.dir, HOLDERS_FILE), (tmp) => writeFile(tmp, data, { flag: 'wx', mode: 0o600 }), { durability: 'atomic', tmpDir: this.tmpDir });
  }

  private async readJson<T>(name: string): Promise<T | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.dir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw internal(`image store: reading ${name}`, err);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw internal(`image store: ${join(this.dir, name)} is not valid JSON`, err);
    }
  }

  /** By id, unique id prefix, tag or digest reference. */
  find(refOrId: string): StoredImage | undefined {
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
  tagOf(refOrId: string): string | undefined {
    if (HEX_PREFIX.test(refOrId)) return undefined;
    try {
      const ref = parseReference(refOrId);
      return ref.digest ? undefined : formatReference(ref);
    } catch {
      return undefined;
    }
  }

  /** Creates or updates the record of a pulled image; the tag moves here from any other image. */
  record(ref: ImageReference, name: string, topDigest: string, manifestDigests: string[], m: ImageManifest, configFile: ImageConfigFile, chains: string[]): StoredImage {
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

  /** Every blob digest and snapshot chain id some image or holder still needs. */
  referenced(): Set<string> {
    const keep = new Set<string>();
    for (const image of this.images.values()) {
      for (const d of [...image.manifestDigests, image.configDigest, ...image.layerDigests, ...image.chainIds]) keep.add(d);
    }
    for (const holder of this.holders.values()) for (const c of holder.chainIds) keep.add(c);
    return keep;
  }
}

export function publicRecord(s: StoredImage): ImageRecord {
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
