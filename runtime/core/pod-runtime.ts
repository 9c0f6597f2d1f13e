/**
 * The small core every CRI RPC of server/ works over: the pod and container
 * records, the locks that order changes to them, the event bus, the exit
 * monitor and the containers' stdio. It holds no RPC's steps; those live in
 * server/, one file per RPC. Made by openPodRuntime (core/recover.ts).
 */
import { join } from 'node:path';
import { KeyedLock } from '../../common/index.js';
import type { CgroupManager } from '../cgroups/index.js';
import { failedPrecondition, notFound, unavailable } from '../../cri-api/errors.js';
import type { Logger } from '../../cri-api/logger.js';
import type { ImageStore } from '../../image-store/index.js';
import type { NetworkManager } from '../../network/index.js';
import { ContainerIoTable } from '../logs/container-io.js';
import { containerStatus } from '../records/cri-view.js';
import { nowNs, RecordStore, type ContainerRecord, type SandboxRecord } from '../records/store.js';
import type { RunscFeatures } from '../runsc/features.js';
import type { Runsc } from '../runsc/runsc.js';
import { SandboxDriver } from '../runsc/sandbox-driver.js';
import type { InfraRootfs } from '../spec/infra-rootfs.js';
import { ImageFileCache } from '../spec/path-mounts.js';
import { StatsCollector } from '../stats/collector.js';
import { containerEvent, EventBus, type ContainerEventType } from './events.js';
import { ExitMonitor } from './exit-monitor.js';

export interface PodRuntimeOptions {
  /** Records live under <stateDir>/pods and <stateDir>/containers. */
  stateDir: string;
  /** Bundles, pod files and FIFOs live under <runDir>/pods and <runDir>/containers. */
  runDir: string;
  runsc: Runsc;
  images: ImageStore;
  network: NetworkManager;
  infra: InfraRootfs;
  /** The probed runsc features; undefined while runsc is unusable. */
  features: () => RunscFeatures | undefined;
  /** runsc flags pods may set with dev.gvisor.flag.<name> annotations (runsc/gvisor-flags.ts). */
  gvisorFlagAllowlist?: readonly string[];
  /** Places and limits sandboxes' cgroups; openPodRuntime makes a default one (cgroupfs driver, parent "gvisor-cri") when absent. */
  cgroups?: CgroupManager;
  /** Told of each record recovery moved aside and each recovery step that failed (the daemon counts them). */
  onRecoveryProblem?: (problem: RecoveryProblem) => void;
  logger: Logger;
}

/** What recovery went on past: a record it could not use, or a step of rebuilding or cleaning up that failed. */
export interface RecoveryProblem {
  kind: 'pod' | 'container' | 'runsc' | 'image' | 'network';
  problem: 'unreadable_record' | 'failed_step';
}

export class PodRuntime {
  readonly opts: PodRuntimeOptions;
  readonly logger: Logger;
  readonly sandboxes: RecordStore<SandboxRecord>;
  readonly containers: RecordStore<ContainerRecord>;
  /**
   * An RPC that changes a pod or container holds the lock of its id (a pod's
   * before its containers'), and RunPodSandbox the pod's name while it
   * reserves it; record files have their own write lock besides (records/store.ts).
   */
  readonly locks = new KeyedLock();
  readonly driver: SandboxDriver;
  /** The daemon's ends of containers' stdio. */
  readonly io: ContainerIoTable;
  readonly exits: ExitMonitor;
  /** Usage statistics (ContainerStats & co). */
  readonly stats: StatsCollector;
  /** Container and pod lifecycle events (GetContainerEvents). */
  readonly events: EventBus;
  /** The daemon's own oom_score_adj, the floor of its sandboxes' (spec/oci-spec.ts). */
  readonly daemonOomScoreAdj: number;
  /** Pod sandboxes' host cgroups (cgroups/). */
  readonly cgroups: CgroupManager;
  /** Images' /etc/passwd and /etc/group, read once per snapshot. */
  readonly imageFiles = new ImageFileCache();
  private readonly loggedOnce = new Set<string>();

  constructor(opts: PodRuntimeOptions, daemonOomScoreAdj: number, cgroups: CgroupManager) {
    this.opts = opts;
    this.cgroups = cgroups;
    this.logger = opts.logger;
    this.daemonOomScoreAdj = daemonOomScoreAdj;
    this.sandboxes = new RecordStore(join(opts.stateDir, 'pods'), 'pod sandbox', 'durable');
    this.containers = new RecordStore(join(opts.stateDir, 'containers'), 'container', 'atomic');
    this.driver = new SandboxDriver(opts.runsc, opts.logger.child({ module: 'sandbox-driver' }));
    this.io = new ContainerIoTable({ containerDir: (id) => this.containerDir(id), driver: this.driver, reaper: opts.runsc.options.reaper, logger: opts.logger });
    this.events = new EventBus(opts.logger.child({ module: 'events' }));
    this.exits = new ExitMonitor({ driver: this.driver, containers: this.containers, io: this.io, stopped: (c) => this.emit('CONTAINER_STOPPED_EVENT', c.id, c.sandboxId),
      oomCounters: async (c) => {
        const path = this.sandboxes.get(c.sandboxId)?.cgroup?.path;
        return path === undefined ? undefined : cgroups.oomCounters(path);
      },
      logger: opts.logger,
    });
    const overlay = opts.runsc.options.overlay2 ?? '';
    this.stats = new StatsCollector({
      runsc: opts.runsc,
      source: this,
      writableLayerMountpoint: overlay.startsWith('root:dir=') ? overlay.slice('root:dir='.length) : opts.runDir,
      logger: opts.logger.child({ module: 'stats' }),
    });
  }

  /** Stops waiting and reading; leaves every pod and container running. */
  async close(): Promise<void> {
    this.events.close();
    await this.exits.close();
    await Promise.allSettled(this.io.ids().map((id) => this.io.close(id, false)));
  }

  // --- paths -------------------------------------------------------------------

  /** Empty, mode 0000: what a masked file of a container shows (spec/path-mounts.ts). */
  get maskFile(): string {
    return join(this.opts.runDir, 'masked-file');
  }

  podDir(id: string): string {
    return join(this.opts.runDir, 'pods', id);
  }

  containerDir(id: string): string {
    return join(this.opts.runDir, 'containers', id);
  }

  /** The OCI bundle CreateContainer writes and StartContainer hands to runsc. */
  containerBundleDir(id: string): string {
    return join(this.containerDir(id), 'bundle');
  }

  /** Where a restoring container's archive is unpacked until StartContainer restores it (on disk: images can be large). */
  restoreDir(id: string): string {
    return join(this.opts.stateDir, 'restore', id);
  }

  // --- lookups -------------------------------------------------------------------

  /** Sandboxes CRI may see: half-made ones are not listed. */
  listSandboxes(): SandboxRecord[] {
    return this.sandboxes.list().filter((s) => s.phase !== 'creating');
  }

  getSandbox(id: string): SandboxRecord | undefined {
    const s = this.sandboxes.find(id);
    return s && s.phase !== 'creating' ? s : undefined;
  }

  listContainers(): ContainerRecord[] {
    return this.containers.list().filter((c) => c.phase !== 'creating');
  }

  getContainer(id: string): ContainerRecord | undefined {
    const c = this.containers.find(id);
    return c && c.phase !== 'creating' ? c : undefined;
  }

  /** The container, or NOT_FOUND. */
  requireContainer(id: string): ContainerRecord {
    const c = this.getContainer(id);
    if (!c) throw notFound(`container "${id}" not found`);
    return c;
  }

  /** The container an exec or attach may reach: it exists and runs. */
  requireRunningContainer(id: string, what: string): ContainerRecord {
    const c = this.getContainer(id);
    if (!c) throw notFound(`${what}: container "${id}" not found`);
    if (c.phase !== 'running') throw failedPrecondition(`${what} in container ${c.name} (${c.id.slice(0, 12)}): container is ${c.phase}, not running`);
    return c;
  }

  /** The pod a port-forward may reach: it exists and is ready. */
  requireReadyPod(id: string, what: string): SandboxRecord {
    const pod = this.getSandbox(id);
    if (!pod) throw notFound(`${what}: pod sandbox "${id}" not found`);
    if (pod.phase !== 'ready') throw failedPrecondition(`${what} to pod ${pod.namespace}/${pod.name} (${pod.id.slice(0, 12)}): pod sandbox is not ready`);
    return pod;
  }

  /**
   * A container's image as kubelet expects it named (containerd's choice): a
   * tag rather than a bare id, and a repo digest as image_ref.
   */
  imageNames(c: ContainerRecord): { image: string; imageRef: string } {
    const img = this.opts.images.resolve(c.imageId);
    const image = c.image.startsWith('sha256:') && img?.repoTags[0] ? img.repoTags[0] : c.image;
    return { image, imageRef: img?.repoDigests[0] ?? c.imageId };
  }

  /** The probed runsc features, or UNAVAILABLE while runsc is not usable. */
  requireFeatures(): RunscFeatures {
    const f = this.opts.features();
    if (!f) throw unavailable('runsc is not usable on this node (see the RuntimeReady condition of Status)');
    return f;
  }

  // --- events and notes ----------------------------------------------------------

  /** Publishes a lifecycle event with the pod's and its containers' status as they are now. */
  emit(type: ContainerEventType, id: string, pod: SandboxRecord | string): void {
    const sandbox = typeof pod === 'string' ? this.sandboxes.get(pod) : pod;
    if (!sandbox) return;
    const members = this.containers.list().filter((x) => x.sandboxId === sandbox.id && x.phase !== 'creating');
    this.events.publish(containerEvent(type, id, sandbox, members.map((x) => containerStatus(x, this.imageNames(x))), nowNs()));
  }

  /** Logs a note about what this node cannot do once per daemon, not per request. */
  logOnce(message: string): void {
    if (this.loggedOnce.has(message)) return;
    this.loggedOnce.add(message);
    this.logger.info(message);
  }
}
