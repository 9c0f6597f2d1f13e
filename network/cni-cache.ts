import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isAtomicWriteTemp, writeFileAtomic } from '../common/index.js';
import type { CniConfList } from './cni-config.js';
import type { RuntimeConfig } from './cni-list.js';

/**
 * What a pod's network was set up with, on disk: the exact config list, the
 * CNI_ARGS, the runtime config and the ADD result. DEL needs all of them,
 * also after a daemon restart or after the node's config changed.
 */
export interface CacheEntry {
  format: 1;
  podId: string;
  netnsPath: string;
  ifName: 'eth0';
  args: Array<[string, string]>;
  runtimeConfig: RuntimeConfig;
  config: CniConfList;
  configSource: string;
  /** Absent while ADD is in flight (or if it never finished). */
  result?: unknown;
  ips?: string[];
}

export class CniCache {
  private readonly entries = new Map<string, CacheEntry>();

  constructor(private readonly dir: string) {}

  /** Reads every entry from disk; unreadable files are returned so the caller can log them. */
  async load(): Promise<string[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const bad: string[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (!name.endsWith('.json')) {
        if (isAtomicWriteTemp(name)) await rm(path, { force: true });
        continue;
      }
      try {
        const entry = JSON.parse(await readFile(path, 'utf8')) as CacheEntry;
        if (entry.format !== 1 || typeof entry.podId !== 'string') throw new Error('unknown format');
        this.entries.set(entry.podId, entry);
      } catch (err) {
        bad.push(`${path}: ${(err as Error).message}`);
      }
    }
    return bad;
  }

  get(podId: string): CacheEntry | undefined {
    return this.entries.get(podId);
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  async put(entry: CacheEntry): Promise<void> {
    await writeFileAtomic(join(this.dir, `${entry.podId}.json`), JSON.stringify(entry), { durability: 'durable', mode: 0o600 });
    this.entries.set(entry.podId, entry);
  }

  async remove(podId: string): Promise<void> {
    await rm(join(this.dir, `${podId}.json`), { force: true });
    this.entries.delete(podId);
  }
}
