/**
 * Usage statistics of pods and containers from `runsc events --stats`, in
 * CRI's units. One runsc call per container (runsc answers for one
 * container at a time), cached briefly so kubelet's polling does not spawn
 * runsc per request.
 *
 * What runsc 20240729 reports, and what that means here:
 * - cpu.usage.total: nanoseconds of CPU the sentry charged to the container's
 *   tasks (cumulative). Exec'd processes count to their container.
 * - memory.usage.usage: gVisor has no per-container memory accounting. With
 *   only the root (infra) container the sandbox total is its own; with app
 *   containers, runsc reports 0 for the root and splits the sandbox total
 *   equally among the running ones. Container memory is therefore runsc's equal share;
 *   pod memory is the sandbox total. runsc reports no inactive_file and no
 *   RSS, so working set = usage and rss_bytes is left unset.
 * - pids.current: tasks of the container.
 * - network_interfaces: the sandbox's netstack interfaces (same for every
 *   container of the pod), used for pod network stats.
 */
import type { ContainerStats } from '../../cri-api/generated/runtime/v1/ContainerStats.js';
import type { CpuUsage } from '../../cri-api/generated/runtime/v1/CpuUsage.js';
import type { FilesystemUsage } from '../../cri-api/generated/runtime/v1/FilesystemUsage.js';
import type { MemoryUsage } from '../../cri-api/generated/runtime/v1/MemoryUsage.js';
import type { NetworkUsage } from '../../cri-api/generated/runtime/v1/NetworkUsage.js';
import type { PodSandboxStats } from '../../cri-api/generated/runtime/v1/PodSandboxStats.js';
import { ConcurrencyLimit } from '../../common/index.js';
import { notFound, wrapError } from '../../cri-api/errors.js';
import type { Logger } from '../../cri-api/logger.js';
import { isGone, type Runsc, type RunscStats } from '../runsc/runsc.js';
import type { ContainerRecord, SandboxRecord } from '../records/store.js';

/** How long one runsc sample answers repeated requests. */
export const STATS_CACHE_MS = 1000;
/** runsc processes sampling at once: a node-wide list must not fork one per container in one go. */
const MAX_CONCURRENT_SAMPLES = 8;

/** `runsc events --stats` fields beyond the ones the wrapper types. */
interface RawStats extends RunscStats {
  data?: RunscStats['data'] & {
    network_interfaces?: {
      Name: string;
      RxBytes: number;
      RxPackets?: number;
      RxErrors: number;
      RxDropped?: number;
      TxBytes: number;
      TxPackets?: number;
      TxErrors: number;
      TxDropped?: number;
    }[];
  };
}

/** One container's numbers at one instant. */
export interface StatsSample {
  /** Wall-clock time of the sample, ns since the epoch. */
  timestampNs: bigint;
  cpuNs: bigint;
  /** CPU rate since the previous sample of this container; undefined for the first one. */
  nanoCores?: bigint;
  memoryBytes: number;
  /** runsc's memory limit, 0 when none. */
  memoryLimitBytes: number;
  pids: number;
  interfaces: NetworkInterfaceSample[];
}

/** One netstack interface of the sandbox, cumulative since the sandbox started. Packet counts are undefined from a runsc that does not report them. */
export interface NetworkInterfaceSample {
  name: string;
  rxBytes: number;
  rxPackets?: number;
  rxErrors: number;
  rxDropped?: number;
  txBytes: number;
  txPackets?: number;
  txErrors: number;
  txDropped?: number;
}

/** What the collector needs of PodRuntime (kept narrow so tests and PodRuntime need not know each other's insides). */
export interface StatsSource {
  listSandboxes(): SandboxRecord[];
  getSandbox(id: string): SandboxRecord | undefined;
  listContainers(): ContainerRecord[];
  getContainer(id: string): ContainerRecord | undefined;
}

export interface StatsCollectorOptions {
  runsc: Runsc;
  source: StatsSource;
  /**
   * Where container writes live, reported as the writable layer's fs_id.
   * With --overlay2=root:memory they live in sandbox memory (and are counted
   * there), so the writable layer reports 0 bytes rather than counting them twice.
   */
  writableLayerMountpoint: string;
  logger: Logger;
  cacheMs?: number;
}

const u64 = (v: number | bigint): { value: string } => ({ value: String(v) });

export class StatsCollector {
  private readonly opts: StatsCollectorOptions;
  private readonly cache = new Map<string, { at: number; sample: Promise<StatsSample> }>();
  private readonly previous = new Map<string, StatsSample>();
  private readonly podPrevious = new Map<string, { timestampNs: bigint; cpuNs: bigint; nanoCores?: bigint }>();
  private readonly sampling = new ConcurrencyLimit(MAX_CONCURRENT_SAMPLES);

  constructor(opts: StatsCollectorOptions) {
    this.opts = opts;
  }

  /** Stats of one running container; NOT_FOUND for unknown or not running ones. */
  async containerStats(id: string): Promise<ContainerStats> {
    const c = this.opts.source.getContainer(id);
    if (!c) throw notFound(`container "${id}" not found`);
    if (c.phase !== 'running') throw notFound(`container ${c.name} (${c.id.slice(0, 12)}) is ${c.phase}: stats exist only for running containers`);
    const s = await this.sample(c.id);
    if (!s) throw notFound(`container ${c.name} (${c.id.slice(0, 12)}) is no longer running`);
    return this.toContainerStats(c, s);
  }

  /** Stats of the running containers among `containers`; ones that stop meanwhile are left out. */
  async listContainerStats(containers: ContainerRecord[]): Promise<ContainerStats[]> {
    const running = containers.filter((c) => c.phase === 'running');
    const samples = await Promise.all(running.map((c) => this.sample(c.id)));
    this.prune();
    return running.flatMap((c, i) => (samples[i] ? [this.toContainerStats(c, samples[i])] : []));
  }

  /** Stats of one ready pod; NOT_FOUND for unknown or stopped ones. */
  async podSandboxStats(id: string): Promise<PodSandboxStats> {
    const pod = this.opts.source.getSandbox(id);
    if (!pod) throw notFound(`pod sandbox "${id}" not found`);
    const stats = await this.podStats(pod);
    if (!stats) throw notFound(`pod sandbox ${pod.namespace}/${pod.name} (${pod.id.slice(0, 12)}) is not ready: stats exist only for ready pods`);
    return stats;
  }

  async listPodSandboxStats(pods: SandboxRecord[]): Promise<PodSandboxStats[]> {
    const all = await Promise.all(pods.map((p) => this.podStats(p)));
    this.prune();
    return all.filter((s): s is PodSandboxStats => s !== undefined);
  }

  private async podStats(pod: SandboxRecord): Promise<PodSandboxStats | undefined> {
    if (pod.phase !== 'ready') return undefined;
    const members = this.opts.source.listContainers().filter((c) => c.sandboxId === pod.id);
    const running = members.filter((c) => c.phase === 'running');
    const [root, ...samples] = await Promise.all([this.sample(pod.id), ...running.map((c) => this.sample(c.id))]);
    if (!root) return undefined;
    const live = running.flatMap((c, i) => (samples[i] ? [{ c, s: samples[i] }] : []));
    const ts = root.timestampNs;
    const cpuNs = live.reduce((sum, x) => sum + x.s.cpuNs, root.cpuNs);
    // runsc splits the sandbox total equally among its running app
    // containers (checked against runsc 20240729; exited ones are not
    // counted, and a created one is not runsc's until it starts); undo that
    // split. With none, the root container has it all.
    const memory = running.length === 0 ? root.memoryBytes : (live[0]?.s.memoryBytes ?? 0) * running.length;
    const prev = this.podPrevious.get(pod.id);
    let nanoCores: bigint | undefined;
    if (prev && ts === prev.timestampNs) {
      // Same (cached) root sample as last time: same answer.
      nanoCores = prev.nanoCores;
    } else {
      // A container that exited takes its CPU with it: no rate across such a drop.
      if (prev && ts > prev.timestampNs && cpuNs >= prev.cpuNs) nanoCores = ((cpuNs - prev.cpuNs) * 1_000_000_000n) / (ts - prev.timestampNs);
      this.podPrevious.set(pod.id, { timestampNs: ts, cpuNs, nanoCores });
    }
    return {
      attributes: {
        id: pod.id,
        metadata: { name: pod.name, uid: pod.uid, namespace: pod.namespace, attempt: pod.attempt },
        labels: pod.labels,
        annotations: pod.annotations,
      },
      linux: {
        cpu: cpuUsage(ts, cpuNs, nanoCores),
        memory: memoryUsage(ts, memory, root.memoryLimitBytes),
        network: networkUsage(ts, root.interfaces),
        process: { timestamp: String(ts), process_count: u64(live.reduce((n, x) => n + x.s.pids, root.pids)) },
        containers: live.map((x) => this.toContainerStats(x.c, x.s)),
      },
    };
  }

  private toContainerStats(c: ContainerRecord, s: StatsSample): ContainerStats {
    const ts = String(s.timestampNs);
    const writable: FilesystemUsage = { timestamp: ts, fs_id: { mountpoint: this.opts.writableLayerMountpoint }, used_bytes: u64(0), inodes_used: u64(0) };
    return {
      attributes: { id: c.id, metadata: { name: c.name, attempt: c.attempt }, labels: c.labels, annotations: c.annotations },
      cpu: cpuUsage(s.timestampNs, s.cpuNs, s.nanoCores),
      memory: memoryUsage(s.timestampNs, s.memoryBytes, s.memoryLimitBytes),
      writable_layer: writable,
    };
  }

  /** A cached or fresh sample; undefined when the container (or its sandbox) no longer runs. */
  async sample(id: string): Promise<StatsSample | undefined> {
    const now = Date.now();
    let entry = this.cache.get(id);
    if (!entry || now - entry.at > (this.opts.cacheMs ?? STATS_CACHE_MS)) {
      entry = { at: now, sample: this.fetch(id) };
      this.cache.set(id, entry);
      // A failed sample must not be served from the cache.
      const mine = entry;
      entry.sample.catch(() => {
        if (this.cache.get(id) === mine) this.cache.delete(id);
      });
    }
    try {
      return await entry.sample;
    } catch (err) {
      if (isGone(err)) return undefined;
      throw wrapError(err, `collect stats of ${id.slice(0, 12)}`);
    }
  }

  private async fetch(id: string): Promise<StatsSample> {
    const raw = (await this.sampling.run(() => this.opts.runsc.stats(id))) as RawStats;
    const d = raw.data ?? {};
    const s: StatsSample = {
      timestampNs: BigInt(Date.now()) * 1_000_000n,
      cpuNs: BigInt(Math.trunc(d.cpu?.usage?.total ?? 0)),
      memoryBytes: d.memory?.usage?.usage ?? 0,
      memoryLimitBytes: d.memory?.usage?.limit ?? 0,
      pids: d.pids?.current ?? 0,
      interfaces: (d.network_interfaces ?? []).map((n) => ({
        name: n.Name,
        rxBytes: n.RxBytes,
        rxPackets: n.RxPackets,
        rxErrors: n.RxErrors,
        rxDropped: n.RxDropped,
        txBytes: n.TxBytes,
        txPackets: n.TxPackets,
        txErrors: n.TxErrors,
        txDropped: n.TxDropped,
      })),
    };
    const prev = this.previous.get(id);
    if (prev && s.timestampNs > prev.timestampNs) {
      // runsc's figure for a mostly blocked container can dip by a few ms
      // between samples; CRI's counter is cumulative, so it never goes back.
      if (s.cpuNs < prev.cpuNs) s.cpuNs = prev.cpuNs;
      s.nanoCores = ((s.cpuNs - prev.cpuNs) * 1_000_000_000n) / (s.timestampNs - prev.timestampNs);
    }
    this.previous.set(id, s);
    return s;
  }

  /** Forgets samples of pods and containers that are gone. */
  prune(): void {
    const known = new Set([...this.opts.source.listSandboxes().map((s) => s.id), ...this.opts.source.listContainers().map((c) => c.id)]);
    for (const map of [this.cache, this.previous, this.podPrevious]) {
      for (const id of map.keys()) if (!known.has(id)) map.delete(id);
    }
  }
}

function cpuUsage(ts: bigint, cpuNs: bigint, nanoCores: bigint | undefined): CpuUsage {
  return { timestamp: String(ts), usage_core_nano_seconds: u64(cpuNs), usage_nano_cores: nanoCores === undefined ? null : u64(nanoCores) };
}

function memoryUsage(ts: bigint, usage: number, limit: number): MemoryUsage {
  return {
    timestamp: String(ts),
    usage_bytes: u64(usage),
    working_set_bytes: u64(usage),
    available_bytes: limit > 0 ? u64(Math.max(0, limit - usage)) : null,
  };
}

function networkUsage(ts: bigint, interfaces: StatsSample['interfaces']): NetworkUsage {
  const rows = interfaces.map((n) => ({ name: n.name, rx_bytes: u64(n.rxBytes), rx_errors: u64(n.rxErrors), tx_bytes: u64(n.txBytes), tx_errors: u64(n.txErrors) }));
  // kubelet reports the default interface as the pod's network; CNI names it eth0.
  const def = rows.find((r) => r.name === 'eth0') ?? rows.find((r) => r.name !== 'lo') ?? null;
  return { timestamp: String(ts), default_interface: def, interfaces: rows };
}
