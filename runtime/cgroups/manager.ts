/**
 * The daemon's hand on cgroupfs: makes and removes pod sandboxes' cgroups,
 * writes their limits, reads their OOM counters and usage, and sweeps the
 * ones no live sandbox owns. Plain file writes; no external tool.
 *
 * runsc 20240729 (checked here, README "Resources and cgroups"): given
 * `linux.cgroupsPath` in the sandbox spec it puts the sentry and every
 * gofer (sub-containers' too) in that cgroup, making the directories that
 * are missing and removing those on delete; sub-containers' resources and
 * cgroupsPath are ignored. So the daemon makes the parents, owns the
 * limits, and removes whatever is left with the pod.
 */
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { sideBySide } from '../../common/index.js';
import type { Logger } from '../../cri-api/logger.js';
import { allRoots, controllerRoot, readLayout, type CgroupLayout } from './hierarchy.js';
import { sharesToWeight, type SandboxLimits, type SandboxOverhead } from './limits.js';
import { ancestors, defaultParentFor, sandboxCgroupPath, SYSTEMD_SCOPE_PREFIX, type CgroupDriver } from './paths.js';

export interface CgroupManagerOptions {
  driver: CgroupDriver;
  /** Parent of sandboxes whose pod names no cgroup_parent (paths.ts defaultParentFor). */
  defaultParent: string;
  overhead: SandboxOverhead;
  logger: Logger;
}

/** OOM counters of a sandbox cgroup; they only grow. */
export interface OomCounters {
  /** Processes the kernel's OOM killer killed in the cgroup (v1 oom_control oom_kill, v2 memory.events oom_kill). */
  oomKills: number;
  /** Times usage hit the limit (v1 memory.failcnt, v2 memory.events max): pressure, not a kill. */
  limitHits: number;
}

/** A sandbox cgroup's usage. */
export interface CgroupUsage {
  /** Cumulative CPU time of the sentry and gofers (v1 cpuacct.usage, v2 cpu.stat usage_usec). */
  cpuNs: bigint;
  /** Charged memory (v1 memory.usage_in_bytes, v2 memory.current). */
  memoryBytes: number;
  /** Usage less inactive file pages, as cAdvisor and kubelet's eviction count it. */
  workingSetBytes: number;
  /** Anonymous and swap-cache memory (v1 memory.stat total_rss, v2 anon). */
  rssBytes: number;
}

/** Our sandbox ids: 64 hex digits (records/store.ts newRecordId). */
const SANDBOX_ID = /^[0-9a-f]{64}$/;
const SCOPE_NAME = new RegExp(`^${SYSTEMD_SCOPE_PREFIX}-([0-9a-f]{64})\\.scope$`);
/** How long a removal waits for the sandbox's last processes to leave its cgroup. */
const REMOVE_WAIT_MS = 10_000;
/** A cgroup younger than this may be one another daemon is filling right now: sweep leaves it. */
export const SWEEP_GRACE_MS = 120_000;

const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class CgroupManager {
  readonly driver: CgroupDriver;
  /** The daemon-wide parent in the driver's form. */
  readonly defaultParent: string;
  readonly overhead: SandboxOverhead;
  private readonly logger: Logger;

  /** `layout` undefined: the host mounts no cgroup filesystem; sandboxes are placed by path only. */
  constructor(opts: CgroupManagerOptions, readonly layout: CgroupLayout | undefined) {
    this.driver = opts.driver;
    this.defaultParent = defaultParentFor(opts.driver, opts.defaultParent);
    this.overhead = opts.overhead;
    this.logger = opts.logger;
  }

  static async open(opts: CgroupManagerOptions): Promise<CgroupManager> {
    return new CgroupManager(opts, await readLayout());
  }

  /** The sandbox cgroup's path (relative to each hierarchy's root). */
  pathFor(cgroupParent: string | undefined, sandboxId: string): string {
    return sandboxCgroupPath(this.driver, cgroupParent, this.defaultParent, sandboxId);
  }

  /**
   * Makes the parents of the sandbox cgroup that are missing, in every
   * hierarchy, before runsc creates the sandbox. The sandbox's own
   * directory is left to runsc: one it makes it also removes on
   * `runsc delete`, whoever calls that (it leaves one it found). Returns
   * the ancestors this call made (nearest first), which removal takes away
   * again: a parent kubelet made is kubelet's, one we made is ours.
   */
  async create(path: string): Promise<string[]> {
    if (!this.layout) return [];
    const made = new Set<string>();
    const chain = [...ancestors(path)].reverse();
    for (const root of allRoots(this.layout)) {
      // The root's own subtree_control too: without systemd nobody else turns the controllers on.
      if (this.layout.version === 2) await enableControllers(root);
      for (const dir of chain) {
        if (await mkdirOnce(join(root, dir))) made.add(dir);
        // v2 hands controllers down only where the parent enables them.
        if (this.layout.version === 2) await enableControllers(join(root, dir));
      }
    }
    const cpuset = this.layout.version === 1 ? controllerRoot(this.layout, 'cpuset') : undefined;
    if (cpuset) for (const dir of chain) await inheritCpuset(join(cpuset, dir));
    return chain.filter((d) => made.has(d)).reverse();
  }

  /**
   * Writes the limits (unset ones become unlimited). A memory limit below
   * what the sandbox uses already is refused by the kernel: that is
   * reported, and the old limit stays.
   */
  async setLimits(path: string, limits: SandboxLimits): Promise<void> {
    const layout = this.layout;
    if (!layout) return;
    const mem = controllerRoot(layout, 'memory');
    const cpu = controllerRoot(layout, 'cpu');
    if (layout.version === 1) {
      // Memory and CPU side by side (CreateContainer waits for them); the CPU quota's period before the quota.
      const cpuWrites = async (root: string): Promise<void> => {
        await writeControl(join(root, path, 'cpu.cfs_period_us'), String(limits.cpuPeriodUs));
        await sideBySide([writeControl(join(root, path, 'cpu.cfs_quota_us'), String(limits.cpuQuotaUs ?? -1)), writeControl(join(root, path, 'cpu.shares'), String(limits.cpuShares))]);
      };
      await sideBySide([mem && this.writeMemoryLimit(join(mem, path, 'memory.limit_in_bytes'), String(limits.memoryBytes ?? -1)), cpu && cpuWrites(cpu)]);
      return;
    }
    const dir = join(layout.path, path);
    // Each write is a round trip to the threadpool, and CreateContainer waits for all three.
    await sideBySide([
      this.writeMemoryLimit(join(dir, 'memory.max'), limits.memoryBytes === undefined ? 'max' : String(limits.memoryBytes)),
      writeControl(join(dir, 'cpu.max'), `${limits.cpuQuotaUs ?? 'max'} ${limits.cpuPeriodUs}`),
      writeControl(join(dir, 'cpu.weight'), String(sharesToWeight(limits.cpuShares))),
    ]);
  }

  private async writeMemoryLimit(file: string, value: string): Promise<void> {
    try {
      await writeFile(file, value);
    } catch (err) {
      // v1 refuses a limit below usage it cannot reclaim (EBUSY): the sandbox keeps its old, looser one.
      if (errCode(err) !== 'EBUSY') throw new Error(`writing "${value}" to ${file}: ${(err as Error).message}`);
      this.logger.warn({ cgroup: file, limit: value }, 'the sandbox already uses more memory than the new limit; the old limit stays');
    }
  }

  /** The memory limit now in force (bytes; undefined = unlimited or no memory controller). */
  async memoryLimit(path: string): Promise<number | undefined> {
    const mem = this.layout && controllerRoot(this.layout, 'memory');
    if (!mem || !this.layout) return undefined;
    const raw = (await readFile(join(mem, path, this.layout.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8')).trim();
    const n = Number(raw);
    // v1 reports "unlimited" as the largest page-aligned int64.
    return raw === 'max' || !Number.isFinite(n) || n >= 2 ** 62 ? undefined : n;
  }

  /**
   * Removes the sandbox cgroup from every hierarchy, then the ancestors
   * `made` names if nothing else lives in them. Waits for the sandbox's last
   * processes to leave (a killed sentry takes a moment to be reaped).
   */
  async remove(path: string, made: readonly string[] = []): Promise<void> {
    if (!this.layout) return;
    const roots = allRoots(this.layout);
    for (const root of roots) await removeDir(join(root, path), REMOVE_WAIT_MS);
    for (const dir of made) {
      for (const root of roots) await removeDir(join(root, dir), 0);
    }
  }

  /** The cgroup's OOM counters; undefined when it (or the memory controller) is not there. */
  async oomCounters(path: string): Promise<OomCounters | undefined> {
    const mem = this.layout && controllerRoot(this.layout, 'memory');
    if (!mem || !this.layout) return undefined;
    try {
      if (this.layout.version === 1) {
        const control = keyValues(await readFile(join(mem, path, 'memory.oom_control'), 'utf8'));
        const failcnt = Number((await readFile(join(mem, path, 'memory.failcnt'), 'utf8')).trim());
        return { oomKills: control.get('oom_kill') ?? 0, limitHits: failcnt };
      }
      const events = keyValues(await readFile(join(mem, path, 'memory.events'), 'utf8'));
      return { oomKills: events.get('oom_kill') ?? 0, limitHits: events.get('max') ?? 0 };
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** CPU and memory of the sandbox cgroup; undefined when it is gone. */
  async usage(path: string): Promise<CgroupUsage | undefined> {
    const layout = this.layout;
    if (!layout) return undefined;
    try {
      if (layout.version === 1) {
        const acct = controllerRoot(layout, 'cpuacct');
        const mem = controllerRoot(layout, 'memory');
        if (!acct || !mem) return undefined;
        const cpuNs = BigInt((await readFile(join(acct, path, 'cpuacct.usage'), 'utf8')).trim());
        const memoryBytes = Number((await readFile(join(mem, path, 'memory.usage_in_bytes'), 'utf8')).trim());
        const stat = keyValues(await readFile(join(mem, path, 'memory.stat'), 'utf8'));
        const inactive = stat.get('total_inactive_file') ?? 0;
        return { cpuNs, memoryBytes, workingSetBytes: Math.max(0, memoryBytes - inactive), rssBytes: stat.get('total_rss') ?? 0 };
      }
      const dir = join(layout.path, path);
      const cpu = keyValues(await readFile(join(dir, 'cpu.stat'), 'utf8'));
      const memoryBytes = Number((await readFile(join(dir, 'memory.current'), 'utf8')).trim());
      const stat = keyValues(await readFile(join(dir, 'memory.stat'), 'utf8'));
      const inactive = stat.get('inactive_file') ?? 0;
      return { cpuNs: BigInt(cpu.get('usage_usec') ?? 0) * 1000n, memoryBytes, workingSetBytes: Math.max(0, memoryBytes - inactive), rssBytes: stat.get('anon') ?? 0 };
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Whether sandboxes can be placed and limited here (`gvisor-cri check`):
   * the controllers the daemon uses are mounted, and a cgroup under the
   * daemon-wide parent takes a memory limit and a CPU quota and is removed.
   */
  async probe(): Promise<{ ok: boolean; detail: string }> {
    const layout = this.layout;
    if (!layout) return { ok: false, detail: 'no cgroup filesystem is mounted' };
    const wanted = layout.version === 1 ? ['memory', 'cpu', 'cpuacct', 'pids'] : ['memory', 'cpu', 'pids'];
    const have = layout.version === 1 ? wanted.filter((c) => controllerRoot(layout, c)) : (await readFile(join(layout.path, 'cgroup.controllers'), 'utf8')).trim().split(/\s+/);
    const missing = wanted.filter((c) => !have.includes(c));
    if (missing.length > 0) return { ok: false, detail: `cgroup v${layout.version}: controller(s) ${missing.join(', ')} not available` };
    const path = posix.join(posix.dirname(this.pathFor(undefined, '0'.repeat(64))), `check-${process.pid}`);
    const made = await this.create(path);
    try {
      // runsc would make the sandbox's own directory; here nothing joins it.
      for (const root of allRoots(layout)) await mkdirOnce(join(root, path));
      const limit = 64 * 1024 * 1024;
      await this.setLimits(path, { memoryBytes: limit, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, cpuShares: 512 });
      if ((await this.memoryLimit(path)) !== limit) return { ok: false, detail: `cgroup v${layout.version}: a memory limit written to ${path} did not hold` };
      if (!(await this.oomCounters(path)) || !(await this.usage(path))) return { ok: false, detail: `cgroup v${layout.version}: ${path} shows no OOM counters or usage` };
    } finally {
      await this.remove(path, made);
    }
    return { ok: true, detail: `cgroup v${layout.version}, ${this.driver} driver: ${wanted.join(', ')} usable under ${this.defaultParent}` };
  }

  /**
   * Removes sandbox cgroups no live sandbox owns: ours under the daemon-wide
   * parent, and the ones runsc made at each hierarchy's root for sandboxes
   * started without a cgroup path. Only directories named like our
   * sandboxes, older than SWEEP_GRACE_MS, and empty (rmdir refuses a
   * cgroup with processes) go. Returns the paths removed.
   */
  async sweep(ownedIds: ReadonlySet<string>, graceMs = SWEEP_GRACE_MS): Promise<string[]> {
    if (!this.layout) return [];
    const parent = posix.dirname(this.pathFor(undefined, '0'.repeat(64)));
    const removed = new Set<string>();
    const now = Date.now();
    for (const root of allRoots(this.layout)) {
      for (const [dir, pattern] of [[parent, this.driver === 'systemd' ? SCOPE_NAME : SANDBOX_ID], ['/', SANDBOX_ID]] as const) {
        for (const name of await readdir(join(root, dir)).catch(() => [] as string[])) {
          const m = pattern.exec(name);
          const id = m?.[1] ?? m?.[0];
          if (!id || ownedIds.has(id)) continue;
          const full = join(root, dir, name);
          const info = await stat(full).catch(() => undefined);
          if (!info?.isDirectory() || now - info.mtimeMs < graceMs) continue;
          try {
            await rmdir(full);
            removed.add(join(dir, name));
          } catch (err) {
            // Busy: processes still run in it (a sandbox of another runsc root); not ours to end.
            this.logger.debug({ err, cgroup: full }, 'sweep: leaving a cgroup that is in use');
          }
        }
      }
    }
    return [...removed];
  }
}

/** mkdir that tells whether it made the directory. */
async function mkdirOnce(dir: string): Promise<boolean> {
  try {
    await mkdir(dir);
    return true;
  } catch (err) {
    if (errCode(err) === 'EEXIST') return false;
    throw new Error(`making cgroup ${dir}: ${(err as Error).message}`);
  }
}

/**
 * A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and
 * joining it fails (ENOSPC): give an empty one its parent's, as runsc does
 * for the cgroups it makes itself.
 */
async function inheritCpuset(dir: string): Promise<void> {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    if ((await readFile(join(dir, file), 'utf8')).trim() !== '') continue;
    await writeControl(join(dir, file), (await readFile(join(dir, '..', file), 'utf8')).trim());
  }
}

/** On v2, turns on in `dir`'s subtree the controllers it has of memory, cpu and pids. */
async function enableControllers(dir: string): Promise<void> {
  const have = (await readFile(join(dir, 'cgroup.controllers'), 'utf8')).trim().split(/\s+/);
  const want = ['memory', 'cpu', 'pids'].filter((c) => have.includes(c));
  if (want.length > 0) await writeControl(join(dir, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '));
}

async function writeControl(file: string, value: string): Promise<void> {
  try {
    await writeFile(file, value);
  } catch (err) {
    throw new Error(`writing "${value}" to ${file}: ${(err as Error).message}`);
  }
}

/** rmdir, retrying while busy until `waitMs` passes; a missing dir is fine, a busy one after the wait is an error. */
async function removeDir(dir: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENOENT') return;
      if ((code === 'EBUSY' || code === 'ENOTEMPTY') && waitMs === 0) return;
      if (code !== 'EBUSY' || Date.now() >= deadline) throw new Error(`removing cgroup ${dir}: ${(err as Error).message}`);
      await sleep(50);
    }
  }
}

/** "key value" lines (memory.stat, memory.events, oom_control, cpu.stat) as numbers. */
function keyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v));
  }
  return out;
}
