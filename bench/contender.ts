/** What every contender offers the cases: the same pod and container, driven its own way. */
import type { MemoryFigure } from './procs.js';

/** relist also takes the memory figures (idle ones are taken at start). */
export type CaseName = 'lifecycle' | 'concurrent' | 'relist' | 'pull' | 'pull-floor' | 'network' | 'stream';
export const ALL_CASES: readonly CaseName[] = ['lifecycle', 'concurrent', 'relist', 'pull', 'pull-floor', 'network', 'stream'];

export type ContenderName = 'raw' | 'raw-naive' | 'gvisor-cri' | 'containerd' | 'containerd-runc';
export const ALL_CONTENDERS: readonly ContenderName[] = ['raw', 'raw-naive', 'gvisor-cri', 'containerd', 'containerd-runc'];

export interface PodRef {
  id: string;
  name: string;
}

export interface ContainerRef {
  id: string;
  podId: string;
}

/** What tables need of a contender; floors measured by a case itself show under `raw`. */
export type ShownContender = Pick<Contender, 'name' | 'label' | 'reference'>;

export interface Contender {
  readonly name: ContenderName;
  /** One line for tables. */
  readonly label: string;
  /** An unsandboxed reference row, never a target. */
  readonly reference: boolean;
  readonly cases: ReadonlySet<CaseName>;
  /** Starts whatever the contender needs (daemon, network, images); throws when it cannot run at all. */
  start(): Promise<void>;
  runPod(name: string): Promise<PodRef>;
  /** Create + start of the bench container (busybox, waits for SIGTERM). */
  startContainer(pod: PodRef): Promise<ContainerRef>;
  /** ExecSync(`true`); throws unless it exits 0. */
  exec(ctr: ContainerRef): Promise<void>;
  stopRemoveContainer(ctr: ContainerRef): Promise<void>;
  stopRemovePod(pod: PodRef): Promise<void>;
  /** The CRI socket kubelet's relist is run against (relist-client.ts); none for raw runsc. */
  readonly criSocket?: string;
  /** Untimed: makes the next pull of `image` cold (RemoveImage). */
  prepareColdPull?(image: string): Promise<void>;
  /** PullImage: timed by the pull cases, untimed before the stream case's pods. */
  pullImage?(image: string): Promise<void>;
  /** The stream case (CRI contenders): a container of any image and command. */
  startContainerWith?(pod: PodRef, image: string, args: readonly string[]): Promise<ContainerRef>;
  /** The URL an Exec RPC (stdout + stderr, no tty) returns. */
  execUrl?(ctr: ContainerRef, cmd: readonly string[]): Promise<string>;
  /** The URL a PortForward RPC returns. */
  portForwardUrl?(pod: PodRef, port: number): Promise<string>;
  /** The pod's IP (PodSandboxStatus). */
  podIp?(pod: PodRef): Promise<string>;
  /** runsc's state root of its sandboxes, when the floor may `runsc exec` into them (container id = runsc id). */
  readonly runscRoot?: string;
  /** The contender's own processes (not its sandboxes); undefined when it has none. */
  daemonMemory(): Promise<MemoryFigure | undefined>;
  /** Its gVisor sandbox and gofer processes. */
  sandboxMemory(): Promise<MemoryFigure>;
  /** Best effort: removes every pod it still has. */
  removeAllPods(): Promise<void>;
  /** Stops and removes everything it made; never throws. */
  stop(): Promise<void>;
}

/** The command of the bench container: exits promptly on SIGTERM, like a well-behaved app. */
export const CONTAINER_ARGS = ['sh', '-c', "trap 'exit 0' TERM; sleep 3600 & wait"];
/** Grace period StopContainer gets (kubelet's default is 30 s; the container exits at once). */
export const STOP_TIMEOUT_SEC = 10;

/** Runs `fn` over `items`, at most `limit` at a time; never rejects (cleanup helper). */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
