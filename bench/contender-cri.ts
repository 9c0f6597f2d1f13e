/**
 * A contender driven over a CRI socket, as kubelet drives it: gvisor-cri and
 * containerd (runsc or runc handler) share this code, so only the server
 * differs.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CONTAINER_ARGS, forEachLimited, STOP_TIMEOUT_SEC, type CaseName, type ContainerRef, type Contender, type ContenderName, type PodRef } from './contender.js';
import { CriClient } from './cri-client.js';
import type { BenchImages } from './env.js';
import type { MemoryFigure } from './procs.js';

/** The server behind the socket: started once, possibly shared by several contenders (containerd's two handlers). */
export interface CriBackend {
  readonly socket: string;
  /** Pod log directories go below this. */
  readonly logDir: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The server's own processes (not its sandboxes). */
  daemonMemory(): Promise<MemoryFigure>;
  sandboxMemory(): Promise<MemoryFigure>;
  /** Images the backend needs pulled before pods can run (containerd's sandbox image). */
  readonly extraImages: readonly string[];
  /** runsc's state root, when container ids are runsc ids there (gvisor-cri). */
  readonly runscRoot?: string;
  /** Removes what the server's CNI DEL leaves behind of pods that are gone (`liveIds`: its pods still there); how many things went. */
  sweepLeaks?(liveIds: ReadonlySet<string>): Promise<number>;
}

const LABEL = 'gvisor-cri-bench/contender';
export const RPC_TIMEOUT_MS = 120_000;

interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  hostname: string;
  log_directory: string;
  labels: Record<string, string>;
  linux: { security_context: { namespace_options: { network: string; pid: string; ipc: string } } };
}

export class CriContender implements Contender {
  private client: CriClient | undefined;
  private readonly configs = new Map<string, PodSandboxConfig>();

  constructor(
    readonly name: ContenderName,
    readonly label: string,
    readonly reference: boolean,
    readonly cases: ReadonlySet<CaseName>,
    private readonly backend: CriBackend,
    private readonly runtimeHandler: string,
    private readonly images: BenchImages,
  ) {}

  private get cri(): CriClient {
    if (!this.client) throw new Error(`${this.name} is not started`);
    return this.client;
  }

  async start(): Promise<void> {
    await this.backend.start();
    this.client = new CriClient(this.backend.socket);
    await this.cri.call('runtime', 'Version', { version: 'v1' }, 30_000);
    for (const image of [this.images.busybox, ...this.backend.extraImages]) {
      await this.cri.call('image', 'PullImage', { image: { image } }, RPC_TIMEOUT_MS);
    }
  }

  async runPod(name: string): Promise<PodRef> {
    const uid = randomBytes(8).toString('hex');
    const logDirectory = join(this.backend.logDir, `bench_${name}_${uid}`);
    await mkdir(logDirectory, { recursive: true });
    const config: PodSandboxConfig = {
      metadata: { name, uid, namespace: 'bench', attempt: 0 },
      hostname: name,
      log_directory: logDirectory,
      labels: { [LABEL]: this.name },
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    const res = await this.cri.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config, runtime_handler: this.runtimeHandler }, RPC_TIMEOUT_MS);
    this.configs.set(res.pod_sandbox_id, config);
    return { id: res.pod_sandbox_id, name };
  }

  get runscRoot(): string | undefined {
    return this.backend.runscRoot;
  }

  startContainer(pod: PodRef): Promise<ContainerRef> {
    return this.startContainerWith(pod, this.images.busybox, CONTAINER_ARGS);
  }

  async pullImage(image: string): Promise<void> {
    await this.cri.call('image', 'PullImage', { image: { image } }, RPC_TIMEOUT_MS);
  }

  async startContainerWith(pod: PodRef, image: string, args: readonly string[]): Promise<ContainerRef> {
    const config = {
      metadata: { name: 'app', attempt: 0 },
      image: { image },
      command: args,
      log_path: 'app/0.log',
      labels: { [LABEL]: this.name },
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    const created = await this.cri.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod.id, config, sandbox_config: this.configs.get(pod.id) }, RPC_TIMEOUT_MS);
    await this.cri.call('runtime', 'StartContainer', { container_id: created.container_id }, RPC_TIMEOUT_MS);
    return { id: created.container_id, podId: pod.id };
  }

  async exec(ctr: ContainerRef): Promise<void> {
    const res = await this.cri.call<{ exit_code: number; stderr: Buffer }>('runtime', 'ExecSync', { container_id: ctr.id, cmd: ['true'], timeout: 30 }, RPC_TIMEOUT_MS);
    if (res.exit_code !== 0) throw new Error(`ExecSync true in ${ctr.id.slice(0, 12)} exited ${res.exit_code}: ${Buffer.from(res.stderr ?? []).toString().trim()}`);
  }

  async execUrl(ctr: ContainerRef, cmd: readonly string[]): Promise<string> {
    const res = await this.cri.call<{ url: string }>('runtime', 'Exec', { container_id: ctr.id, cmd, tty: false, stdin: false, stdout: true, stderr: true }, RPC_TIMEOUT_MS);
    return res.url;
  }

  async portForwardUrl(pod: PodRef, port: number): Promise<string> {
    const res = await this.cri.call<{ url: string }>('runtime', 'PortForward', { pod_sandbox_id: pod.id, port: [port] }, RPC_TIMEOUT_MS);
    return res.url;
  }

  async podIp(pod: PodRef): Promise<string> {
    const res = await this.cri.call<{ status?: { network?: { ip?: string } } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: pod.id }, RPC_TIMEOUT_MS);
    const ip = res.status?.network?.ip;
    if (!ip) throw new Error(`PodSandboxStatus of ${pod.id.slice(0, 12)}: no pod IP`);
    return ip;
  }

  async stopRemoveContainer(ctr: ContainerRef): Promise<void> {
    await this.cri.call('runtime', 'StopContainer', { container_id: ctr.id, timeout: STOP_TIMEOUT_SEC }, RPC_TIMEOUT_MS);
    await this.cri.call('runtime', 'RemoveContainer', { container_id: ctr.id }, RPC_TIMEOUT_MS);
  }

  async stopRemovePod(pod: PodRef): Promise<void> {
    await this.cri.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod.id }, RPC_TIMEOUT_MS);
    await this.cri.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod.id }, RPC_TIMEOUT_MS);
    this.configs.delete(pod.id);
  }

  get criSocket(): string {
    return this.backend.socket;
  }

  async prepareColdPull(image: string): Promise<void> {
    await this.cri.call('image', 'RemoveImage', { image: { image } }, RPC_TIMEOUT_MS);
  }

  daemonMemory(): Promise<MemoryFigure> {
    return this.backend.daemonMemory();
  }

  sandboxMemory(): Promise<MemoryFigure> {
    return this.backend.sandboxMemory();
  }

  /** Every pod this contender made (by label), stopped and removed; errors are ignored. */
  async removeAllPods(): Promise<void> {
    if (!this.client) return;
    const res = await this.cri.call<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', { filter: { label_selector: { [LABEL]: this.name } } }, 30_000).catch(() => ({ items: [] }));
    await forEachLimited(res.items, 4, (p) => this.stopRemovePod({ id: p.id, name: '' }));
    if (this.backend.sweepLeaks) {
      // Every pod of the server, whichever contender made it: another one's rules must stay.
      const all = await this.cri.call<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', {}, 30_000).catch(() => undefined);
      if (all) await this.backend.sweepLeaks(new Set(all.items.map((p) => p.id)));
    }
  }

  async stop(): Promise<void> {
    await this.removeAllPods().catch(() => undefined);
    this.client?.close();
    this.client = undefined;
    await this.backend.stop().catch(() => undefined);
  }
}
