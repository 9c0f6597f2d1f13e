/**
 * The pod and container lifecycle behind the CRI RuntimeService: records,
 * the runsc sandbox driver, log plumbing and one exit waiter per running
 * container. Handlers (one file per RPC) validate and call in here.
 */
import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { constants as fsc } from 'node:fs';
import { chmod, mkdir, open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { ContainerConfig__Output } from '../../cri-api/generated/runtime/v1/ContainerConfig.js';
import type { LinuxContainerResources__Output } from '../../cri-api/generated/runtime/v1/LinuxContainerResources.js';
import type { PodSandboxConfig__Output } from '../../cri-api/generated/runtime/v1/PodSandboxConfig.js';
import { alreadyExists, deadlineExceeded, failedPrecondition, internal, invalidArgument, notFound, unavailable, wrapError } from '../../cri-api/errors.js';
import type { Logger } from '../../cri-api/logger.js';
import type { ImageStore } from '../../image-store/index.js';
import { writePodFiles, type NetworkManager, type PortMapping } from '../../network/index.js';
import { KeyedLock } from '../../common/index.js';
import { resolveCapabilities } from '../spec/capabilities.js';
import { appArmorProfileName, imageVolumeRequests, mapContainerConfig, mountRecords, resourcesRecord, seccompChoice, specResources } from '../spec/container-config.js';
import { pathMounts, resolveInImage, submountsOf } from '../spec/path-mounts.js';
import { CriLogWriter } from '../logs/cri-log.js';
import type { InfraRootfs } from '../spec/infra-rootfs.js';
import { makeAnyFifo, OutputFifo, StdinFifo } from '../logs/log-pipe.js';
import { buildContainerSpec, buildExecProcess, buildSandboxSpec, readDaemonOomScoreAdj, writeBundle } from '../spec/oci-spec.js';
import type { RunscFeatures } from '../runsc/features.js';
import { isGone, Runsc, type RunscNetwork } from '../runsc/runsc.js';
import { SandboxDriver, type ContainerIo, type ExecSyncResult } from '../runsc/sandbox-driver.js';
import { nowNs, RecordStore, type ContainerRecord, type SandboxRecord } from '../records/store.js';
import { recoverState } from './recover.js';
import { StatsCollector } from '../stats/collector.js';
import { containerEvent, EventBus, type ContainerEventType } from './events.js';
import { containerStatus } from '../server/container-status.js';
import { podRunscFlags, recordedRunscFlags } from '../runsc/gvisor-flags.js';
import { parseTraceList, type TraceSessionState } from '../runsc/trace-session.js';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, IMAGE_DIR_NAME, isCheckpointArchiveRef, readCheckpointArchive, restoreContainerSpec, writeCheckpointArchive, type CheckpointManifest } from '../checkpoint/archive.js';
import type { OciSeccomp, OciSpec } from '../spec/oci-spec.js';
import { bpfHex, compileSeccomp } from '../seccomp/bpf.js';
import { filteredArgs } from '../seccomp/exec-helper.js';

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
  /** runsc flags pods may set with dev.gvisor.flag.<name> annotations (gvisor-flags.ts). */
  gvisorFlagAllowlist?: readonly string[];
  logger: Logger;
}

/** Exit code reported when the real one was lost (containerd's choice too). */
export const UNKNOWN_EXIT_CODE = 255;
/** 128 + SIGKILL: what a container killed with its pod reports. */
const KILLED_EXIT_CODE = 137;
/** How long an exited container's output may take to reach EOF before its log is closed anyway. */
const OUTPUT_DRAIN_MS = 2000;
/** How long to wait for the exit waiter after a stop before recording the exit ourselves. */
const EXIT_RECORD_WAIT_MS = 10_000;
/** Bound on restoring a sandbox from a checkpoint (StartContainer has no timeout of its own). */
const RESTORE_TIMEOUT_MS = 120_000;

/** A running (or created) container's stdio, held by the daemon. */
interface LiveIo {
  stdout: OutputFifo;
  /** Absent with a terminal: it has one output. */
  stderr?: OutputFifo;
  stdin?: StdinFifo;
  /** The terminal's control FIFO (reaper.ts TerminalFiles). */
  control?: string;
  writer?: CriLogWriter;
  pumps: Promise<void>[];
}

interface Waiter {
  controller: AbortController;
  done: Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const newId = (): string => randomBytes(32).toString('hex');
const podLabel = (s: SandboxRecord): string => `${s.namespace}/${s.name} (${s.id.slice(0, 12)})`;

export class PodRuntime {
  readonly sandboxes: RecordStore<SandboxRecord>;
  readonly containers: RecordStore<ContainerRecord>;
  readonly driver: SandboxDriver;
  readonly logger: Logger;
  /** Usage statistics (ContainerStats & co). */
  readonly stats: StatsCollector;
  /** Container and pod lifecycle events (GetContainerEvents). */
  readonly events: EventBus;
  private readonly opts: PodRuntimeOptions;
  private readonly live = new Map<string, LiveIo>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly locks = new KeyedLock();
  private readonly loggedOnce = new Set<string>();
  /** Pods being stopped: their containers' lost exits are kills, not unknowns. */
  private readonly stoppingPods = new Set<string>();
  private daemonOomScoreAdj = 0;
  private closed = false;

  private constructor(opts: PodRuntimeOptions) {
    this.opts = opts;
    this.logger = opts.logger;
    this.sandboxes = new RecordStore(join(opts.stateDir, 'pods'), 'pod sandbox', 'durable');
    this.containers = new RecordStore(join(opts.stateDir, 'containers'), 'container', 'atomic');
    this.driver = new SandboxDriver(opts.runsc, opts.logger.child({ module: 'sandbox-driver' }));
    const overlay = opts.runsc.options.overlay2 ?? '';
    this.stats = new StatsCollector({
      runsc: opts.runsc,
      source: this,
      writableLayerMountpoint: overlay.startsWith('root:dir=') ? overlay.slice('root:dir='.length) : opts.runDir,
      logger: opts.logger.child({ module: 'stats' }),
    });
    this.events = new EventBus(opts.logger.child({ module: 'events' }));
  }

  /** Loads the records and rebuilds live state (recover.ts). Pods keep running across this. */
  static async open(opts: PodRuntimeOptions): Promise<PodRuntime> {
    const rt = new PodRuntime(opts);
    rt.daemonOomScoreAdj = await readDaemonOomScoreAdj();
    await mkdir(opts.runsc.options.root, { recursive: true, mode: 0o700 });
    await mkdir(opts.runDir, { recursive: true, mode: 0o700 });
    await writeFile(rt.maskFile, '', { mode: 0o000 });
    await chmod(rt.maskFile, 0o000);
    await rt.sandboxes.load(opts.logger);
    await rt.containers.load(opts.logger);
    await recoverState(rt, { runsc: opts.runsc, network: opts.network, images: opts.images, logger: opts.logger });
    return rt;
  }

  /** Stops waiting and reading; leaves every pod and container running. */
  async close(): Promise<void> {
    this.closed = true;
    this.events.close();
    const waiters = [...this.waiters.values()];
    for (const w of waiters) w.controller.abort();
    await Promise.allSettled(waiters.map((w) => w.done));
    await Promise.allSettled([...this.live.keys()].map((id) => this.closeIo(id, false)));
  }

  // --- paths -------------------------------------------------------------------

  /** Empty, mode 0000: what a masked file of a container shows (path-mounts.ts). */
  get maskFile(): string {
    return join(this.opts.runDir, 'masked-file');
  }

  podDir(id: string): string {
    return join(this.opts.runDir, 'pods', id);
  }

  containerDir(id: string): string {
    return join(this.opts.runDir, 'containers', id);
  }

  /** The stdin FIFO of a container opened with stdin, for attach. */
  stdinOf(id: string): StdinFifo | undefined {
    return this.live.get(id)?.stdin;
  }

  /**
   * Closes the daemon's end of a container's stdin so the container reads
   * EOF (stdin_once after an attach). Later attaches get no stdin.
   */
  async closeStdin(id: string): Promise<void> {
    const io = this.live.get(id);
    const stdin = io?.stdin;
    if (!io || !stdin) return;
    io.stdin = undefined;
    await stdin.close();
    // The reaper feeds the terminal from its own end of the FIFO: tell it that input ended.
    if (io.control) await writeControl(io.control, 'E');
  }

  /** Resizes a tty container's terminal; false when it has none (or it is gone). */
  async resizeTerminal(id: string, cols: number, rows: number): Promise<boolean> {
    const control = this.live.get(id)?.control;
    if (!control) return false;
    return writeControl(control, `R ${cols} ${rows}`);
  }

  /**
   * Hands every chunk of a running container's stdout/stderr to `listener`
   * too, alongside the CRI log (attach). `ended` resolves when the output
   * ends (the container exited). Undefined when its output is not read here.
   */
  subscribeOutput(id: string, listener: (stream: 'stdout' | 'stderr', chunk: Buffer) => void): { ended: Promise<void>; unsubscribe(): void } | undefined {
    const io = this.live.get(id);
    if (!io) return undefined;
    const onOut = (chunk: Buffer): void => listener('stdout', chunk);
    const onErr = (chunk: Buffer): void => listener('stderr', chunk);
    io.stdout.reader.on('data', onOut);
    io.stderr?.reader.on('data', onErr);
    const endOf = (r: Readable): Promise<void> => new Promise((resolve) => {
      if (r.destroyed || r.readableEnded) return resolve();
      r.once('end', resolve);
      r.once('close', resolve);
    });
    return {
      ended: Promise.all([endOf(io.stdout.reader), io.stderr && endOf(io.stderr.reader)]).then(() => undefined),
      unsubscribe() {
        io.stdout.reader.off('data', onOut);
        io.stderr?.reader.off('data', onErr);
      },
    };
  }

  // --- pod sandboxes -------------------------------------------------------------

  /** Sandboxes CRI may see: half-made ones are not listed. */
  listSandboxes(): SandboxRecord[] {
    return this.sandboxes.list().filter((s) => s.phase !== 'creating');
  }

  getSandbox(id: string): SandboxRecord | undefined {
    const s = this.sandboxes.find(id);
    return s && s.phase !== 'creating' ? s : undefined;
  }

  async runPodSandbox(config: PodSandboxConfig__Output, runtimeHandler: string): Promise<string> {
    const meta = config.metadata!;
    const key = `${meta.name}_${meta.namespace}_${meta.uid}_${meta.attempt}`;
    // Checked before anything exists: a refused flag leaves nothing behind.
    podRunscFlags(config.annotations, this.opts.gvisorFlagAllowlist ?? []);
    const features = this.requireFeatures();
    const nsOpts = config.linux?.security_context?.namespace_options;
    const rec = await this.locks.run(`pod-name:${key}`, async () => {
      const dup = this.sandboxes.list().find((s) => s.name === meta.name && s.namespace === meta.namespace && s.uid === meta.uid && s.attempt === meta.attempt);
      if (dup) throw alreadyExists(`pod sandbox ${meta.namespace}/${meta.name} (uid ${meta.uid}, attempt ${meta.attempt}) already exists as ${dup.id}; remove it first`);
      const r: SandboxRecord = {
        id: newId(),
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        attempt: meta.attempt,
        phase: 'creating',
        createdAtNs: nowNs(),
        runtimeHandler,
        labels: { ...config.labels },
        annotations: { ...config.annotations },
        // containerd's rule: a pod without a hostname gets the node's (a pod name need not be a valid host name).
        hostname: config.hostname || osHostname(),
        logDirectory: config.log_directory,
        hostNetwork: nsOpts?.network === 'NODE',
        namespaceModes: { network: nsOpts?.network ?? 'POD', pid: nsOpts?.pid ?? 'POD', ipc: nsOpts?.ipc ?? 'POD' },
        privileged: config.linux?.security_context?.privileged ?? false,
        ips: [],
      };
      if (config.linux?.resources || config.linux?.overhead) r.podResources = { resources: resourcesRecord(config.linux.resources), overhead: resourcesRecord(config.linux.overhead) };
      // Written before anything is made, so a crash mid-way is rolled back at restart.
      await this.sandboxes.put(r);
      return r;
    });
    return this.locks.run(rec.id, async () => {
      try {
        await this.bringUpSandbox(rec, config, features);
      } catch (err) {
        await this.rollbackSandbox(rec);
        throw wrapError(err, `run pod sandbox ${meta.namespace}/${meta.name}`);
      }
      this.logger.info({ pod: podLabel(rec), ips: rec.ips, hostNetwork: rec.hostNetwork }, 'pod sandbox ready');
      // As containerd: the sandbox's own events carry its id as container_id.
      this.emit('CONTAINER_CREATED_EVENT', rec.id, rec);
      this.emit('CONTAINER_STARTED_EVENT', rec.id, rec);
      return rec.id;
    });
  }

  private async bringUpSandbox(rec: SandboxRecord, config: PodSandboxConfig__Output, features: RunscFeatures): Promise<void> {
    const dns = config.dns_config ? { servers: [...config.dns_config.servers], searches: [...config.dns_config.searches], options: [...config.dns_config.options] } : undefined;
    if (!rec.hostNetwork) {
      const ports: PortMapping[] = config.port_mappings.map((p) => ({
        protocol: p.protocol === 'UDP' ? 'udp' : p.protocol === 'SCTP' ? 'sctp' : 'tcp',
        containerPort: p.container_port,
        hostPort: p.host_port,
        hostIp: p.host_ip,
      }));
      const net = await this.opts.network.setup({ podId: rec.id, name: rec.name, namespace: rec.namespace, uid: rec.uid, portMappings: ports, dns });
      rec.netnsPath = net.netnsPath;
      rec.ips = net.ips;
    }
    const dir = this.podDir(rec.id);
    rec.etcFiles = await writePodFiles(join(dir, 'etc'), { hostname: rec.hostname, dns, ips: rec.ips });
    const spec = buildSandboxSpec({
      id: rec.id,
      hostname: rec.hostname,
      rootfsDir: this.opts.infra.rootfsDir,
      args: this.opts.infra.args,
      netnsPath: rec.netnsPath,
      annotations: {
        'io.kubernetes.cri.sandbox-name': rec.name,
        'io.kubernetes.cri.sandbox-namespace': rec.namespace,
        'io.kubernetes.cri.sandbox-uid': rec.uid,
      },
      cgroupParent: config.linux?.cgroup_parent || undefined,
      sysctls: config.linux?.sysctls,
      etcFiles: rec.etcFiles,
      daemonOomScoreAdj: this.daemonOomScoreAdj,
    });
    rec.pid = await this.driver.createSandbox({
      id: rec.id,
      bundleDir: join(dir, 'bundle'),
      spec,
      networkMode: rec.hostNetwork ? 'host' : 'sandbox',
      netnsPath: rec.netnsPath,
      needsNetnsWorkaround: features.netnsWorkaround,
      logPath: join(dir, 'sandbox.log'),
      runscFlags: recordedRunscFlags(rec.annotations),
    });
    await this.checkSysctls(rec, config.linux?.sysctls ?? {});
    rec.phase = 'ready';
    await this.sandboxes.put(rec);
  }

  /**
   * gVisor's kernel implements only some sysctls and runsc skips the others
   * silently; Kubernetes expects a pod's sysctls to hold, so each one is read
   * back inside the sandbox and a pod that cannot have them fails clearly.
   */
  private async checkSysctls(rec: SandboxRecord, sysctls: Record<string, string>): Promise<void> {
    const wanted = Object.entries(sysctls);
    const busybox = this.opts.infra.busybox;
    if (wanted.length === 0 || !busybox) return;
    const shell = wanted.map(([k]) => `cat /proc/sys/${k.replaceAll('.', '/')} 2>/dev/null || echo '<absent>'`).join('; ');
    const proc = buildExecProcess({ args: [busybox, 'sh', '-c', shell], env: [], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] });
    const r = await this.driver.execSync(rec.id, proc, 10_000);
    const got = r.stdout.toString().split('\n');
    const wrong = wanted.filter(([, v], i) => (got[i] ?? '').trim().replace(/\s+/g, ' ') !== v.trim().replace(/\s+/g, ' '));
    if (wrong.length > 0) {
      const what = wrong.map(([k, v]) => `${k}=${v} (inside gVisor: ${(got[wanted.findIndex(([x]) => x === k)] ?? '').trim() || 'unreadable'})`).join(', ');
      throw failedPrecondition(`sysctls gVisor does not honour: ${what}; remove them from the pod or run it with another runtime`);
    }
  }

  /** Undoes whatever part of a sandbox exists: runsc state, network, files, record. */
  async rollbackSandbox(rec: SandboxRecord): Promise<void> {
    const log = this.logger.child({ pod: podLabel(rec) });
    await this.driver.removeSandbox(rec.id, []).catch((err: unknown) => log.error({ err }, 'rollback: removing the runsc sandbox failed'));
    if (!rec.hostNetwork) await this.opts.network.teardown(rec.id).catch((err: unknown) => log.error({ err }, 'rollback: tearing down the pod network failed'));
    await rm(this.podDir(rec.id), { recursive: true, force: true });
    await this.sandboxes.delete(rec.id);
  }

  /** Unknown ids succeed, as containerd does (the RPC is idempotent). */
  async stopPodSandbox(id: string): Promise<void> {
    const rec = this.getSandbox(id);
    if (!rec) return;
    await this.locks.run(rec.id, () => this.stopPodLocked(rec));
  }

  private async stopPodLocked(rec: SandboxRecord): Promise<void> {
    const ctrs = this.containers.list().filter((c) => c.sandboxId === rec.id);
    this.stoppingPods.add(rec.id);
    try {
      // One SIGKILL of the sandbox ends every container in it (containerd stops them forcibly too).
      await this.driver.stopSandbox(rec.id, ctrs.map((c) => c.id));
      for (const c of ctrs) await this.settleExit(c, KILLED_EXIT_CODE);
    } catch (err) {
      throw wrapError(err, `stop pod sandbox ${podLabel(rec)}`);
    } finally {
      this.stoppingPods.delete(rec.id);
    }
    if (!rec.hostNetwork) {
      try {
        await this.opts.network.teardown(rec.id);
      } catch (err) {
        throw wrapError(err, `stop pod sandbox ${podLabel(rec)}: tear down network`);
      }
    }
    if (rec.phase !== 'notready') {
      rec.phase = 'notready';
      await this.sandboxes.put(rec);
      this.logger.info({ pod: podLabel(rec) }, 'pod sandbox stopped');
      this.emit('CONTAINER_STOPPED_EVENT', rec.id, rec);
    }
  }

  /** Unknown ids succeed. A ready pod is stopped first. */
  async removePodSandbox(id: string): Promise<void> {
    const rec = this.getSandbox(id);
    if (!rec) return;
    await this.locks.run(rec.id, async () => {
      if (!this.sandboxes.get(rec.id)) return;
      await this.stopPodLocked(rec);
      for (const c of this.containers.list().filter((x) => x.sandboxId === rec.id)) {
        await this.locks.run(c.id, () => this.removeContainerLocked(c));
      }
      try {
        await this.driver.removeSandbox(rec.id, []);
      } catch (err) {
        throw wrapError(err, `remove pod sandbox ${podLabel(rec)}`);
      }
      await rm(this.podDir(rec.id), { recursive: true, force: true });
      await this.sandboxes.delete(rec.id);
      this.logger.info({ pod: podLabel(rec) }, 'pod sandbox removed');
      this.emit('CONTAINER_DELETED_EVENT', rec.id, rec);
    });
  }

  /** The sandbox's gVisor trace sessions (`runsc trace list`), for verbose status only. */
  async sandboxTraceSessions(id: string): Promise<TraceSessionState[] | { error: string }> {
    return this.opts.runsc.traceList(id).then(parseTraceList, (err: unknown) => ({ error: (err as Error).message }));
  }

  /** runsc's view of a sandbox, for verbose status only. */
  async sandboxRuntimeState(id: string): Promise<unknown> {
    return this.opts.runsc.state(id).catch((err: unknown) => ({ error: (err as Error).message }));
  }

  // --- containers ------------------------------------------------------------------

  listContainers(): ContainerRecord[] {
    return this.containers.list().filter((c) => c.phase !== 'creating');
  }

  getContainer(id: string): ContainerRecord | undefined {
    const c = this.containers.find(id);
    return c && c.phase !== 'creating' ? c : undefined;
  }

  private mustContainer(id: string): ContainerRecord {
    const c = this.getContainer(id);
    if (!c) throw notFound(`container "${id}" not found`);
    return c;
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

  /** Image volumes as snapshot paths: the image must be on the node, its sub path must exist in it. */
  private async resolveImageVolumes(config: ContainerConfig__Output, ctx: string): Promise<Map<number, { hostPath: string; image: string; imageRef: string }>> {
    const out = new Map<number, { hostPath: string; image: string; imageRef: string }>();
    for (const v of imageVolumeRequests(config)) {
      const img = this.opts.images.resolve(v.image);
      if (!img) throw notFound(`${ctx}: image "${v.image}" of image volume config.mounts[${v.index}] not found; pull it first`);
      const rootfs = await this.opts.images.rootfs(img.id);
      let hostPath = rootfs;
      if (v.subPath) {
        const found = await resolveInImage(rootfs, `/${v.subPath}`);
        if (!found?.dir) throw invalidArgument(`${ctx}: config.mounts[${v.index}].image_sub_path "${v.subPath}" is not a directory in image ${v.image}`);
        hostPath = join(rootfs, found.path);
      }
      out.set(v.index, { hostPath, image: v.image, imageRef: img.id });
    }
    return out;
  }

  /** Lets go of the container's image and of its image volumes' images. */
  private async releaseImages(id: string): Promise<void> {
    for (const holder of this.opts.images.holderIds().filter((h) => h === id || h.startsWith(`${id}/`))) await this.opts.images.release(holder);
  }

  async createContainer(podId: string, config: ContainerConfig__Output): Promise<string> {
    const pod = this.getSandbox(podId);
    if (!pod) throw notFound(`pod sandbox "${podId}" not found`);
    const name = config.metadata!.name;
    const attempt = config.metadata!.attempt;
    return this.locks.run(pod.id, async () => {
      const ctx = `create container ${name} in pod ${podLabel(pod)}`;
      if (pod.phase !== 'ready' || !this.sandboxes.get(pod.id)) throw failedPrecondition(`${ctx}: the pod sandbox is not ready`);
      const features = this.requireFeatures();
      const imageName = config.image!.image;
      if (isCheckpointArchiveRef(imageName)) return this.createRestoredLocked(pod, config, features, ctx);
      const image = this.opts.images.resolve(imageName);
      if (!image) throw notFound(`${ctx}: image "${imageName}" not found; pull it first`);
      const dup = this.containers.list().find((c) => c.sandboxId === pod.id && c.name === name && c.attempt === attempt);
      if (dup) throw alreadyExists(`${ctx}: a container named ${name} (attempt ${attempt}) already exists in this pod as ${dup.id}`);

      const rootfs = await this.opts.images.rootfs(image.id);
      const sc = config.linux?.security_context;
      const choice = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? '');
      let seccompProfileText: string | undefined;
      if (choice.kind === 'localhost') {
        try {
          seccompProfileText = await readFile(choice.path, 'utf8');
        } catch (err) {
          throw invalidArgument(`${ctx}: seccomp profile ${choice.path} cannot be read: ${(err as Error).message}`);
        }
      }
      const imageVolumes = await this.resolveImageVolumes(config, ctx);
      const mapped = mapContainerConfig({
        config,
        imageVolumes,
        image: image.config,
        files: { passwd: await readImageFile(rootfs, 'etc/passwd'), group: await readImageFile(rootfs, 'etc/group') },
        seccompProfileText,
        podPrivileged: pod.privileged,
        appArmorProfiles: appArmorProfileName(config.linux?.security_context?.apparmor, config.linux?.security_context?.apparmor_profile ?? '') === undefined ? undefined : await loadedAppArmorProfiles(),
      });
      for (const note of mapped.notes) this.logOnce(note);
      const seccompFilter = this.execFilter(mapped.seccomp, ctx);
      const terminal = config.tty && this.driver.terminalsSupported;
      if (config.tty && !terminal) this.logOnce('containers asking for a TTY run without one: the runsc reaper, which holds terminals, is not running (see the daemon log)');

      const id = newId();
      const rec: ContainerRecord = {
        ...newContainerFields(id, pod, config),
        image: imageName,
        imageId: image.id,
        mounts: mountRecords(mapped.mounts),
        stdin: config.stdin,
        stdinOnce: config.stdin_once,
        tty: config.tty,
        terminal,
        resources: mapped.resources,
        stopSignal: mapped.stopSignal,
        user: mapped.user,
        env: mapped.env,
        cwd: mapped.cwd,
        capabilities: resolveCapabilities({ add: mapped.capabilities.add, drop: mapped.capabilities.drop, privileged: mapped.privileged, known: features.capabilities }),
        noNewPrivileges: mapped.noNewPrivileges,
        seccompFilter,
      };
      await this.containers.put(rec);
      try {
        await this.opts.images.acquire(image.id, id);
        for (const [i, v] of imageVolumes) await this.opts.images.acquire(v.imageRef, `${id}/image-volume-${i}`);
        // containerd makes a missing host path a directory rather than failing.
        for (const m of mapped.mounts) {
          if (!(await stat(m.hostPath).catch(() => undefined))) await mkdir(m.hostPath, { recursive: true, mode: 0o755 });
        }
        const dir = this.containerDir(id);
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const io = await this.openIo(rec, 'create');
        const spec = buildContainerSpec({
          sandboxId: pod.id,
          rootfsDir: rootfs,
          readonlyRootfs: mapped.readonlyRootfs,
          args: mapped.args,
          // As containerd: a terminal without TERM confuses most programs.
          env: terminal && !mapped.env.some((e) => e.startsWith('TERM=')) ? [...mapped.env, 'TERM=xterm'] : mapped.env,
          cwd: mapped.cwd,
          user: mapped.user,
          terminal,
          hostname: pod.hostname,
          capabilities: mapped.capabilities,
          privileged: mapped.privileged,
          knownCapabilities: features.capabilities,
          noNewPrivileges: mapped.noNewPrivileges,
          mounts: mapped.mounts,
          etcFiles: pod.etcFiles,
          maskedPaths: mapped.maskedPaths,
          readonlyPaths: mapped.readonlyPaths,
          resources: specResources(mapped.resources),
          oomScoreAdj: mapped.resources.oomScoreAdj || undefined,
          daemonOomScoreAdj: this.daemonOomScoreAdj,
          seccomp: mapped.seccomp,
          seccompHelper: seccompFilter ? this.opts.infra.seccompHelper : undefined,
          annotations: { 'io.kubernetes.cri.container-name': name, 'io.kubernetes.cri.image-name': imageName },
          sharedPidNamespace: mapped.sharedPidNamespace,
          submounts: await submountsOf(mapped.mounts.filter((m) => !m.image)),
          pathMounts: await pathMounts({
            rootfsDir: rootfs,
            masked: mapped.maskedPaths ?? [],
            readonly: mapped.readonlyPaths ?? [],
            emptyFile: this.maskFile,
            taken: new Set(mapped.mounts.map((m) => m.containerPath)),
          }),
        });
        await this.driver.createContainer({ id, sandboxId: pod.id, bundleDir: join(dir, 'bundle'), spec, io: containerIo(io), runscFlags: recordedRunscFlags(pod.annotations) });
        rec.phase = 'created';
        await this.containers.put(rec);
      } catch (err) {
        await this.rollbackContainer(rec);
        throw wrapError(err, ctx);
      }
      this.logger.info({ container: id, name, pod: podLabel(pod), image: imageName }, 'container created');
      this.emit('CONTAINER_CREATED_EVENT', id, pod);
      return id;
    });
  }

  /** Undoes a half-made container: runsc state, stdio, files, image hold, record (in that order). */
  async rollbackContainer(rec: ContainerRecord): Promise<void> {
    await this.driver.removeContainer(rec.id).catch((err: unknown) => this.logger.error({ err, container: rec.id }, 'rollback: removing the runsc container failed'));
    await this.closeIo(rec.id, false);
    await rm(this.containerDir(rec.id), { recursive: true, force: true });
    await rm(this.restoreDir(rec.id), { recursive: true, force: true });
    await this.releaseImages(rec.id).catch((err: unknown) => this.logger.error({ err, container: rec.id }, 'rollback: releasing the image failed'));
    await this.containers.delete(rec.id);
  }

  async startContainer(id: string): Promise<void> {
    const c = this.mustContainer(id);
    // Restoring replaces the pod's sandbox: pod lock first, as removePodSandbox takes them.
    if (c.restore) return this.locks.run(c.sandboxId, () => this.locks.run(c.id, () => this.startRestoredLocked(c)));
    await this.locks.run(c.id, async () => {
      const ctx = `start container ${c.name} (${c.id.slice(0, 12)})`;
      if (c.phase !== 'created') throw failedPrecondition(`${ctx}: container is ${c.phase}, only a created container can start`);
      const pod = this.sandboxes.get(c.sandboxId);
      if (pod?.phase !== 'ready') throw failedPrecondition(`${ctx}: its pod sandbox is not ready`);
      try {
        // After a restart between create and start the daemon's ends are gone: open them again.
        // (A terminal's ends stay with the reaper, which outlived the daemon.)
        const io = this.live.get(c.id) ?? (await this.openIo(c, c.terminal ? 'reattach' : 'create'));
        await this.driver.startContainer(c.id, containerIo(io), recordedRunscFlags(pod.annotations));
      } catch (err) {
        // As containerd: a container that failed to start is exited, with why.
        await this.recordExit(c, 128, 'StartError', (err as Error).message);
        throw wrapError(err, ctx);
      }
      c.phase = 'running';
      c.startedAtNs = nowNs();
      await this.containers.put(c);
      this.startWaiter(c);
      this.logger.info({ container: c.id, name: c.name }, 'container started');
      this.emit('CONTAINER_STARTED_EVENT', c.id, c.sandboxId);
    });
  }

  /** Exited and unknown containers succeed, as CRI (and critest's idempotence suite) want; like removeContainer. */
  async stopContainer(id: string, timeoutSec: number): Promise<void> {
    const c = this.getContainer(id);
    if (!c) return;
    await this.locks.run(c.id, () => this.stopContainerLocked(c, timeoutSec));
  }

  private async stopContainerLocked(c: ContainerRecord, timeoutSec: number): Promise<void> {
    if (c.phase !== 'running') return;
    try {
      await this.driver.stopContainer(c.id, timeoutSec, c.stopSignal);
    } catch (err) {
      throw wrapError(err, `stop container ${c.name} (${c.id.slice(0, 12)})`);
    }
    await this.settleExit(c, KILLED_EXIT_CODE);
  }

  /**
   * After a kill: waits for the waiter to record the exit; if it does not
   * come, records `fallbackCode` so the state never stays "running" for a
   * container that is gone.
   */
  private async settleExit(c: ContainerRecord, fallbackCode: number): Promise<void> {
    const w = this.waiters.get(c.id);
    if (w) await Promise.race([w.done, sleep(EXIT_RECORD_WAIT_MS)]);
    if (c.phase === 'running') {
      this.waiters.get(c.id)?.controller.abort();
      await this.recordExit(c, fallbackCode, 'Error', 'exit status not received from runsc');
    } else if (c.phase === 'created') {
      // Its runsc state went with the sandbox; nothing will read its FIFOs.
      await this.closeIo(c.id, false);
    }
  }

  /** Unknown ids succeed (idempotent); a running container is killed first. */
  async removeContainer(id: string): Promise<void> {
    const c = this.getContainer(id);
    if (!c) return;
    await this.locks.run(c.id, () => this.removeContainerLocked(c));
  }

  private async removeContainerLocked(c: ContainerRecord): Promise<void> {
    if (!this.containers.get(c.id)) return;
    await this.stopContainerLocked(c, 0);
    try {
      await this.driver.removeContainer(c.id);
    } catch (err) {
      throw wrapError(err, `remove container ${c.name} (${c.id.slice(0, 12)})`);
    }
    this.waiters.get(c.id)?.controller.abort();
    await this.closeIo(c.id, false);
    await rm(this.containerDir(c.id), { recursive: true, force: true });
    await rm(this.restoreDir(c.id), { recursive: true, force: true });
    // Released before the record goes: a crash in between leaves a record whose removal repeats the release.
    await this.releaseImages(c.id);
    await this.containers.delete(c.id);
    this.logger.info({ container: c.id, name: c.name }, 'container removed');
    this.emit('CONTAINER_DELETED_EVENT', c.id, c.sandboxId);
  }

  /**
   * Records new resources. runsc applies limits to the whole sandbox and
   * cannot update one sub-container, so they are kept and reported only.
   */
  async updateContainerResources(id: string, linux: LinuxContainerResources__Output | null): Promise<void> {
    const c = this.mustContainer(id);
    await this.locks.run(c.id, async () => {
      if (!linux) return;
      const next = resourcesRecord(linux);
      const merged = { ...c.resources };
      for (const k of Object.keys(next) as (keyof typeof next)[]) {
        const v = next[k];
        if (k === 'unified' ? Object.keys(v as object).length > 0 : v !== 0 && v !== '') (merged as Record<string, unknown>)[k] = v;
      }
      c.resources = merged;
      await this.containers.put(c);
      this.logOnce('UpdateContainerResources: resources are recorded and reported; runsc cannot change limits of a running sub-container');
    });
  }

  /** Records the pod-level resources kubelet announces (a best-effort notification in CRI); see SandboxRecord.podResources. */
  async updatePodSandboxResources(id: string, resources: LinuxContainerResources__Output | null, overhead: LinuxContainerResources__Output | null): Promise<void> {
    const s = this.getSandbox(id);
    if (!s) throw notFound(`update resources of pod sandbox "${id}": not found`);
    await this.locks.run(s.id, async () => {
      const prev = s.podResources;
      s.podResources = {
        resources: resources ? resourcesRecord(resources) : (prev?.resources ?? resourcesRecord(null)),
        overhead: overhead ? resourcesRecord(overhead) : (prev?.overhead ?? resourcesRecord(null)),
      };
      await this.sandboxes.put(s);
      this.logOnce('UpdatePodSandboxResources: pod-level resources are recorded and reported; gVisor sandboxes run in the daemon\'s cgroup, so they are not enforced');
    });
  }

  async reopenContainerLog(id: string): Promise<void> {
    const c = this.mustContainer(id);
    if (c.phase !== 'running') throw failedPrecondition(`reopen log of container ${c.name} (${c.id.slice(0, 12)}): container is ${c.phase}, not running`);
    const writer = this.live.get(c.id)?.writer;
    if (!writer) return;
    try {
      await writer.reopen();
    } catch (err) {
      throw wrapError(err, `reopen log ${c.logPath} of container ${c.id.slice(0, 12)}`);
    }
  }

  /**
   * The filter exec'd processes of a container get (runsc applies the
   * profile to its first process only); undefined without a profile, or when
   * no exec helper exists for this architecture (logged once).
   */
  private execFilter(profile: OciSeccomp | undefined, ctx: string): string | undefined {
    if (!profile) return undefined;
    if (!this.opts.infra.seccompHelper) {
      this.logOnce(`seccomp profiles apply to a container's first process only on ${process.arch}: the exec helper is x86-64 code`);
      return undefined;
    }
    return bpfHex(compileSeccomp(profile, ctx));
  }

  async execSync(id: string, cmd: string[], timeoutSec: number): Promise<ExecSyncResult> {
    const c = this.mustContainer(id);
    const ctx = `exec in container ${c.name} (${c.id.slice(0, 12)})`;
    if (c.phase !== 'running') throw failedPrecondition(`${ctx}: container is ${c.phase}, not running`);
    const proc = buildExecProcess({ args: filteredArgs(c.seccompFilter, cmd), env: c.env, cwd: c.cwd, user: c.user, terminal: false, capabilities: c.capabilities, noNewPrivileges: c.noNewPrivileges });
    let r: ExecSyncResult;
    try {
      r = await this.driver.execSync(c.id, proc, timeoutSec * 1000, recordedRunscFlags(this.sandboxes.get(c.sandboxId)?.annotations ?? {}));
    } catch (err) {
      if (isGone(err)) throw failedPrecondition(`${ctx}: container is not running`);
      throw wrapError(err, ctx);
    }
    // kubelet's probes read DEADLINE_EXCEEDED as "probe timed out".
    if (r.timedOut) throw deadlineExceeded(`${ctx}: timeout ${timeoutSec}s exceeded`);
    return r;
  }

  // --- checkpoint and restore (checkpoint-archive.ts) -------------------------------

  /** Where a restoring container's archive is unpacked until StartContainer restores it (on disk: images can be large). */
  restoreDir(id: string): string {
    return join(this.opts.stateDir, 'restore', id);
  }

  /**
   * Writes a checkpoint of the container's whole sandbox to `location` as a
   * tar (manifest + runsc image); the container keeps running. The runsc
   * image is written beside `location` first, so it lands on that disk.
   */
  async checkpointContainer(id: string, location: string, timeoutMs: number): Promise<void> {
    const c = this.mustContainer(id);
    const ctx = `checkpoint container ${c.name} (${c.id.slice(0, 12)}) to ${location}`;
    if (!(await stat(dirname(location)).catch(() => undefined))?.isDirectory()) throw invalidArgument(`${ctx}: directory ${dirname(location)} does not exist`);
    if ((await stat(location).catch(() => undefined))?.isDirectory()) throw invalidArgument(`${ctx}: location is a directory; name the archive file to write`);
    const features = this.requireFeatures();
    await this.locks.run(c.id, async () => {
      if (c.phase !== 'running') throw failedPrecondition(`${ctx}: container is ${c.phase}, not running`);
      const pod = this.sandboxes.get(c.sandboxId);
      if (pod?.phase !== 'ready') throw failedPrecondition(`${ctx}: its pod sandbox is not ready`);
      const work = join(dirname(location), `.${basename(location)}.work-${randomBytes(4).toString('hex')}`);
      const started = Date.now();
      try {
        await mkdir(work, { mode: 0o700 });
        const spec = JSON.parse(await readFile(join(this.containerDir(c.id), 'bundle', 'config.json'), 'utf8')) as OciSpec;
        const members = await this.driver.appContainersOf(pod.id);
        await this.driver.checkpointSandbox(pod.id, join(work, IMAGE_DIR_NAME), timeoutMs);
        const manifest: CheckpointManifest = {
          format: CHECKPOINT_FORMAT,
          version: CHECKPOINT_VERSION,
          createdAt: new Date().toISOString(),
          runscVersion: features.version,
          pod: { id: pod.id, name: pod.name, namespace: pod.namespace, uid: pod.uid, hostNetwork: pod.hostNetwork, etcFiles: pod.etcFiles },
          container: {
            id: c.id, name: c.name, attempt: c.attempt, image: c.image, imageId: c.imageId, imageRef: this.imageNames(c).imageRef,
            mounts: c.mounts, stdin: c.stdin, stdinOnce: c.stdinOnce, tty: c.tty, resources: c.resources, stopSignal: c.stopSignal,
            user: c.user, env: c.env, cwd: c.cwd, capabilities: c.capabilities, noNewPrivileges: c.noNewPrivileges,
            seccompFilter: c.seccompFilter,
          },
          spec,
          sandboxContainers: members.map((m) => ({ id: m, name: this.containers.get(m)?.name ?? m })),
        };
        await writeCheckpointArchive(location, work, manifest);
      } catch (err) {
        throw wrapError(err, ctx);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      this.logger.info({ container: c.id, name: c.name, pod: podLabel(pod), location, ms: Date.now() - started }, 'container checkpointed');
    });
  }

  /**
   * CreateContainer whose image is a checkpoint archive: unpacks it, checks
   * it can be restored here, and makes a created container whose
   * StartContainer restores the pod's sandbox from it. Process, identity and
   * image come from the checkpoint; metadata, labels, annotations, log path
   * and volume host paths from the new config.
   */
  private async createRestoredLocked(pod: SandboxRecord, config: ContainerConfig__Output, features: RunscFeatures, ctx: string): Promise<string> {
    const archive = config.image!.image;
    const { name } = config.metadata!;
    const present = this.containers.list().filter((x) => x.sandboxId === pod.id);
    if (present.length > 0) {
      throw failedPrecondition(`${ctx}: restoring ${archive} replaces the pod's sandbox, and the pod already has containers (${present.map((x) => x.name).join(', ')}); restore into a pod with none`);
    }
    const id = newId();
    const unpacked = this.restoreDir(id);
    let manifest: CheckpointManifest;
    try {
      manifest = await readCheckpointArchive(archive, unpacked);
    } catch (err) {
      await rm(unpacked, { recursive: true, force: true });
      throw wrapError(err, ctx);
    }
    const { imageRef, ...saved } = manifest.container;
    const refuse = (why: string): never => {
      throw failedPrecondition(`${ctx}: checkpoint ${archive} ${why}`);
    };
    const image = this.opts.images.resolve(saved.imageId) ?? this.opts.images.resolve(saved.image);
    try {
      if (manifest.runscVersion !== features.version) refuse(`was taken by ${manifest.runscVersion}; this node runs ${features.version}, and runsc restores only its own checkpoints`);
      if (manifest.sandboxContainers.length !== 1) {
        refuse(`holds ${manifest.sandboxContainers.length} app containers (${manifest.sandboxContainers.map((m) => m.name).join(', ')}); runsc restores a sandbox only with all of them, so only a pod with one container (running or exited) can be restored`);
      }
      // A terminal would need a new console received by the reaper at restore: not done (nor tried) here.
      if (manifest.spec.process.terminal) refuse('is of a container with a terminal (tty: true); restoring terminals is not supported');
      if (manifest.pod.hostNetwork !== pod.hostNetwork) refuse(`is of a ${manifest.pod.hostNetwork ? 'host-network' : 'pod-network'} pod; this pod is not`);
      if (!image) throw notFound(`${ctx}: image ${saved.image} (${saved.imageId}) of checkpoint ${archive} is not on this node; pull it first`);
    } catch (err) {
      await rm(unpacked, { recursive: true, force: true });
      throw err;
    }
    const volumes = config.mounts.map((m) => ({ containerPath: m.container_path, hostPath: m.host_path }));
    const rec: ContainerRecord = {
      ...saved,
      ...newContainerFields(id, pod, config),
      imageId: image.id,
      mounts: saved.mounts.map((m) => ({ ...m, hostPath: volumes.find((v) => v.containerPath === m.containerPath)?.hostPath ?? m.hostPath })),
      terminal: false,
      restore: { archive, imageDir: join(unpacked, IMAGE_DIR_NAME) },
    };
    await this.containers.put(rec);
    try {
      const spec = restoreContainerSpec(manifest.spec, {
        sandboxId: pod.id,
        rootfsDir: await this.opts.images.rootfs(image.id),
        hostname: pod.hostname,
        oldEtcFiles: manifest.pod.etcFiles,
        newEtcFiles: pod.etcFiles,
        mounts: volumes,
        seccompHelper: this.opts.infra.seccompHelper,
      });
      await this.opts.images.acquire(image.id, id);
      const dir = this.containerDir(id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await this.openIo(rec, 'create');
      await writeBundle(join(dir, 'bundle'), spec);
      rec.phase = 'created';
      await this.containers.put(rec);
    } catch (err) {
      await this.rollbackContainer(rec);
      throw wrapError(err, ctx);
    }
    this.logger.info({ container: id, name, pod: podLabel(pod), archive, image: imageRef, from: `${manifest.pod.namespace}/${manifest.pod.name}/${saved.name}` }, 'container created from a checkpoint');
    this.emit('CONTAINER_CREATED_EVENT', id, pod);
    return id;
  }

  /**
   * StartContainer of a container made from a checkpoint: the pod's
   * cold-booted sandbox is replaced by the one restored from the archive,
   * whose processes continue where they were. On failure the pod gets a
   * fresh sandbox again and the container is exited with StartError.
   */
  private async startRestoredLocked(c: ContainerRecord): Promise<void> {
    const restore = c.restore!;
    const ctx = `start container ${c.name} (${c.id.slice(0, 12)}) from checkpoint ${restore.archive}`;
    if (c.phase !== 'created' || !restore.imageDir) throw failedPrecondition(`${ctx}: container is ${c.phase}, only a created container can start`);
    const pod = this.sandboxes.get(c.sandboxId);
    if (pod?.phase !== 'ready') throw failedPrecondition(`${ctx}: its pod sandbox is not ready`);
    const others = this.containers.list().filter((x) => x.sandboxId === pod.id && x.id !== c.id);
    if (others.length > 0) throw failedPrecondition(`${ctx}: the pod has other containers now (${others.map((x) => x.name).join(', ')}); restoring would replace their sandbox`);
    const features = this.requireFeatures();
    const started = Date.now();
    try {
      const spec = JSON.parse(await readFile(join(this.containerDir(c.id), 'bundle', 'config.json'), 'utf8')) as OciSpec;
      const io = containerIo(this.live.get(c.id) ?? (await this.openIo(c, 'create')));
      if (io.kind !== 'fifo') throw internal('a restored container has no terminal');
      if (!pod.hostNetwork) await this.opts.network.reclaimAddresses(pod.id);
      pod.pid = await this.driver.restoreSandbox({
        ...this.sandboxBoot(pod, features),
        imageDir: restore.imageDir,
        containers: [{ id: c.id, bundleDir: join(this.containerDir(c.id), 'bundle'), spec, io }],
        timeoutMs: RESTORE_TIMEOUT_MS,
      });
    } catch (err) {
      await this.rebootSandbox(pod, features);
      await this.recordExit(c, 128, 'StartError', (err as Error).message);
      throw wrapError(err, ctx);
    }
    await this.sandboxes.put(pod);
    c.phase = 'running';
    c.startedAtNs = nowNs();
    c.restore = { archive: restore.archive };
    await this.containers.put(c);
    await rm(this.restoreDir(c.id), { recursive: true, force: true });
    this.startWaiter(c);
    this.logger.info({ container: c.id, name: c.name, pod: podLabel(pod), archive: restore.archive, ms: Date.now() - started }, 'container restored from a checkpoint');
    this.emit('CONTAINER_STARTED_EVENT', c.id, pod);
  }

  /** How the pod's sandbox is booted: also what a restore of it needs. */
  private sandboxBoot(pod: SandboxRecord, features: RunscFeatures): { id: string; bundleDir: string; networkMode: RunscNetwork; netnsPath?: string; needsNetnsWorkaround: boolean; logPath: string } {
    const dir = this.podDir(pod.id);
    return { id: pod.id, bundleDir: join(dir, 'bundle'), networkMode: pod.hostNetwork ? 'host' : 'sandbox', netnsPath: pod.netnsPath, needsNetnsWorkaround: features.netnsWorkaround, logPath: join(dir, 'sandbox.log') };
  }

  /** After a failed restore: boots the pod's own sandbox again from its bundle (unless it still runs: the restore failed before replacing it), or marks the pod NOTREADY. */
  private async rebootSandbox(pod: SandboxRecord, features: RunscFeatures): Promise<void> {
    const boot = this.sandboxBoot(pod, features);
    if ((await this.driver.state(pod.id).catch(() => undefined))?.status === 'running') return;
    try {
      const spec = JSON.parse(await readFile(join(boot.bundleDir, 'config.json'), 'utf8')) as OciSpec;
      if (!pod.hostNetwork) await this.opts.network.reclaimAddresses(pod.id);
      pod.pid = await this.driver.createSandbox({ ...boot, spec });
      await this.sandboxes.put(pod);
    } catch (err) {
      this.logger.error({ err, pod: podLabel(pod) }, 'the pod sandbox could not be booted again after a failed restore; marking it NOTREADY');
      pod.phase = 'notready';
      await this.sandboxes.put(pod);
      this.emit('CONTAINER_STOPPED_EVENT', pod.id, pod);
    }
  }

  // --- internals shared with recover.ts -----------------------------------------

  /** Opens the container's stdio ends and starts copying output into its CRI log. */
  async openIo(c: ContainerRecord, mode: 'create' | 'reattach'): Promise<LiveIo> {
    const dir = this.containerDir(c.id);
    const opened: { close(): Promise<void> }[] = [];
    try {
      const reaper = this.opts.runsc.options.reaper;
      const stdout = mode === 'create' ? await OutputFifo.create(join(dir, 'stdout'), this.logger, reaper) : await OutputFifo.reattach(join(dir, 'stdout'));
      opened.push(stdout);
      let stderr: OutputFifo | undefined;
      let control: string | undefined;
      if (c.terminal) {
        control = join(dir, 'tty-control');
        await makeAnyFifo(control, reaper);
      } else {
        stderr = mode === 'create' ? await OutputFifo.create(join(dir, 'stderr'), this.logger, reaper) : await OutputFifo.reattach(join(dir, 'stderr'));
        opened.push(stderr);
      }
      let stdin: StdinFifo | undefined;
      if (c.stdin) {
        stdin = mode === 'create' ? await StdinFifo.create(join(dir, 'stdin'), reaper) : await StdinFifo.reattach(join(dir, 'stdin'));
        opened.push(stdin);
      }
      let writer: CriLogWriter | undefined;
      if (c.logPath) {
        writer = new CriLogWriter(c.logPath, { logger: this.logger });
        await writer.open();
      }
      const outputs: [Readable, 'stdout' | 'stderr'][] = [[stdout.reader, 'stdout']];
      if (stderr) outputs.push([stderr.reader, 'stderr']);
      const pumps = outputs.map(([r, name]) => (writer ? writer.pump(r, name) : drain(r)));
      const io: LiveIo = { stdout, stderr, stdin, control, writer, pumps };
      // A new FIFO is held by the reaper that made it (OutputFifo.create); after a restart this daemon's reaper holds them too.
      if (mode === 'reattach') this.driver.holdOutput(stderr ? [stdout.path, stderr.path] : [stdout.path]);
      this.live.set(c.id, io);
      return io;
    } catch (err) {
      for (const o of opened) await o.close().catch(() => undefined);
      throw wrapError(err, `open stdio of container ${c.id.slice(0, 12)}`);
    }
  }

  /**
   * Closes the daemon's stdio ends. With `drain`, first lets the output
   * reach EOF (bounded), so the log holds everything the container wrote.
   */
  async closeIo(id: string, drain: boolean): Promise<void> {
    const io = this.live.get(id);
    if (!io) return;
    this.live.delete(id);
    const all = Promise.all(io.pumps);
    if (drain) await Promise.race([all, sleep(OUTPUT_DRAIN_MS)]);
    await io.stdout.close().catch(() => undefined);
    await io.stderr?.close().catch(() => undefined);
    await io.stdin?.close().catch(() => undefined);
    await Promise.race([all, sleep(100)]);
    await io.writer?.close();
  }

  /** One `runsc wait` per running container; its answer is the exit. */
  startWaiter(c: ContainerRecord): void {
    if (this.waiters.has(c.id) || this.closed) return;
    const controller = new AbortController();
    const done = (async (): Promise<void> => {
      let code: number;
      let message = '';
      try {
        code = await this.driver.waitContainer(c.id, controller.signal);
      } catch (err) {
        if (controller.signal.aborted) return;
        code = this.stoppingPods.has(c.sandboxId) ? KILLED_EXIT_CODE : UNKNOWN_EXIT_CODE;
        message = code === UNKNOWN_EXIT_CODE ? `exit status lost: ${(err as Error).message}` : '';
      }
      if (c.phase !== 'running' || !this.containers.get(c.id)) return;
      await this.recordExit(c, code, code === UNKNOWN_EXIT_CODE ? 'Unknown' : undefined, message);
    })().catch((err: unknown) => this.logger.error({ err, container: c.id }, 'recording a container exit failed'));
    this.waiters.set(c.id, { controller, done });
    void done.finally(() => {
      if (this.waiters.get(c.id)?.done === done) this.waiters.delete(c.id);
    });
  }

  /** Resolves when the container's waiter has recorded its exit, or after `ms`. */
  async awaitExitRecord(id: string, ms: number): Promise<void> {
    const w = this.waiters.get(id);
    if (w) await Promise.race([w.done, sleep(ms)]);
  }

  /** Marks the container exited, persists, then finishes its log. */
  async recordExit(c: ContainerRecord, exitCode: number, reason?: string, message = ''): Promise<void> {
    c.phase = 'exited';
    c.exitCode = exitCode;
    c.finishedAtNs = nowNs();
    // containerd's reasons; OOMKilled is not detected (runsc wait reports only the status).
    c.reason = reason ?? (exitCode === 0 ? 'Completed' : 'Error');
    c.message = message;
    if (this.containers.get(c.id)) await this.containers.put(c);
    this.logger.info({ container: c.id, name: c.name, exitCode, reason: c.reason }, 'container exited');
    this.emit('CONTAINER_STOPPED_EVENT', c.id, c.sandboxId);
    await this.closeIo(c.id, true);
  }

  /** Publishes a lifecycle event with the pod's and its containers' status as they are now. */
  private emit(type: ContainerEventType, id: string, pod: SandboxRecord | string): void {
    const sandbox = typeof pod === 'string' ? this.sandboxes.get(pod) : pod;
    if (!sandbox) return;
    const members = this.containers.list().filter((x) => x.sandboxId === sandbox.id && x.phase !== 'creating');
    this.events.publish(containerEvent(type, id, sandbox, members.map((x) => containerStatus(x, this.imageNames(x))), nowNs()));
  }

  logOnce(message: string): void {
    if (this.loggedOnce.has(message)) return;
    this.loggedOnce.add(message);
    this.logger.info(message);
  }

  private requireFeatures(): RunscFeatures {
    const f = this.opts.features();
    if (!f) throw unavailable('runsc is not usable on this node (see the RuntimeReady condition of Status)');
    return f;
  }
}

/** Reads a file of an image's rootfs, its links resolved inside the image (a hostile image must not make us read host files). */
async function readImageFile(rootfs: string, rel: string): Promise<string | undefined> {
  const found = await resolveInImage(rootfs, `/${rel}`);
  if (!found || found.dir) return undefined;
  return readFile(join(rootfs, found.path), 'utf8').catch(() => undefined);
}

/** Reads and drops output nobody logs, so the pipe never fills. */
function drain(r: Readable): Promise<void> {
  return new Promise((resolve) => {
    r.on('data', () => undefined);
    r.once('end', resolve);
    r.once('close', resolve);
    r.once('error', () => resolve());
  });
}

/** How the driver connects a container's stdio, from the daemon's open ends. */
function containerIo(io: LiveIo): ContainerIo {
  if (io.control) return { kind: 'tty', stdout: io.stdout, stdin: io.stdin, control: io.control };
  if (!io.stderr) throw internal('container stdio: no stderr FIFO and no terminal');
  return { kind: 'fifo', stdout: io.stdout, stderr: io.stderr, stdin: io.stdin };
}

/**
 * One line to a terminal's control FIFO. Non-blocking: with no reader
 * (the reaper is gone, so is the terminal) the open fails and it is false.
 */
async function writeControl(path: string, line: string): Promise<boolean> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
    await fh.write(`${line}\n`);
    return true;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

/** Names of the AppArmor profiles loaded on the host; undefined when AppArmor is off (then profiles are only noted). */
async function loadedAppArmorProfiles(): Promise<Set<string> | undefined> {
  const enabled = await readFile('/sys/module/apparmor/parameters/enabled', 'utf8').catch(() => 'N');
  if (!enabled.startsWith('Y')) return undefined;
  const text = await readFile('/sys/kernel/security/apparmor/profiles', 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // Lines are "<name> (<mode>)".
  return new Set(text.split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/ \([^)]*\)\s*$/, '')));
}

/** What every new container record starts with: its identity in the pod, no history yet, the caller's labels and log path. */
function newContainerFields(id: string, pod: SandboxRecord, config: ContainerConfig__Output): Pick<ContainerRecord, 'id' | 'sandboxId' | 'name' | 'attempt' | 'phase' | 'createdAtNs' | 'startedAtNs' | 'finishedAtNs' | 'exitCode' | 'reason' | 'message' | 'labels' | 'annotations' | 'logPath'> {
  return {
    id,
    sandboxId: pod.id,
    name: config.metadata!.name,
    attempt: config.metadata!.attempt,
    phase: 'creating',
    createdAtNs: nowNs(),
    startedAtNs: '0',
    finishedAtNs: '0',
    exitCode: 0,
    reason: '',
    message: '',
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    logPath: pod.logDirectory && config.log_path ? join(pod.logDirectory, config.log_path) : '',
  };
}
