/**
 * Sandbox and container records: what the runtime knows of each pod and
 * container, kept in memory for List/Status and persisted one JSON file per
 * object (temp file, fsync, rename) so a restarted daemon can rebuild itself.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../cri-api/logger.js';
import type { OciUser } from './oci-spec.js';

/** "creating" records are half-made: recovery rolls them back. */
export type SandboxPhase = 'creating' | 'ready' | 'notready';
export type ContainerPhase = 'creating' | 'created' | 'running' | 'exited';

export interface NamespaceModes {
  network: string;
  pid: string;
  ipc: string;
}

export interface SandboxRecord {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  attempt: number;
  phase: SandboxPhase;
  /** Nanoseconds since the epoch, as a decimal string (CRI int64). */
  createdAtNs: string;
  runtimeHandler: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  hostname: string;
  logDirectory: string;
  hostNetwork: boolean;
  namespaceModes: NamespaceModes;
  privileged: boolean;
  netnsPath?: string;
  ips: string[];
  /** resolv.conf / hosts / hostname written for the pod. */
  etcFiles?: { resolvConf: string; hosts: string; hostname: string };
  /** The sandbox process's host pid, for verbose status. */
  pid?: number;
  /**
   * Pod-level resources (the sum of its containers') and overhead, as
   * RunPodSandbox and UpdatePodSandboxResources announced them: recorded and
   * shown in verbose status; the sandbox runs in the daemon's cgroup, so
   * they are not enforced.
   */
  podResources?: { resources: ResourcesRecord; overhead: ResourcesRecord };
}

/** Bind mount as CRI reports it back in ContainerStatus. */
export interface MountRecord {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  propagation: string;
  /** An image volume's image as named, and its id. */
  image?: { image: string; imageRef: string };
}

/** CRI LinuxContainerResources as plain numbers (0 = unset). */
export interface ResourcesRecord {
  cpuPeriod: number;
  cpuQuota: number;
  cpuShares: number;
  memoryLimitBytes: number;
  oomScoreAdj: number;
  cpusetCpus: string;
  cpusetMems: string;
  memorySwapLimitBytes: number;
  unified: Record<string, string>;
}

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  name: string;
  attempt: number;
  phase: ContainerPhase;
  createdAtNs: string;
  startedAtNs: string;
  finishedAtNs: string;
  exitCode: number;
  reason: string;
  message: string;
  /** The image as the caller named it, and the image id it resolved to. */
  image: string;
  imageId: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  mounts: MountRecord[];
  /** Full host path of the CRI log; empty when kubelet asked for none. */
  logPath: string;
  stdin: boolean;
  stdinOnce: boolean;
  /** Asked for a TTY. */
  tty: boolean;
  /** Runs with a terminal (the reaper holds it); false when tty was asked for but none could be given. Absent in records of older daemons. */
  terminal?: boolean;
  resources: ResourcesRecord;
  stopSignal: string;
  /** What ExecSync inherits. */
  user: OciUser;
  env: string[];
  cwd: string;
  capabilities: string[];
  noNewPrivileges: boolean;
  /** The container's seccomp filter (hex BPF) that exec'd processes get through the exec helper; absent when unconfined. */
  seccompFilter?: string;
  /** Checkpoint archive this container is (to be) restored from; `imageDir` holds its unpacked runsc image until StartContainer restores it. */
  restore?: { archive: string; imageDir?: string };
}

/** One kind of record, one file each under `dir`. */
export class RecordStore<T extends { id: string }> {
  private readonly records = new Map<string, T>();

  /**
   * `durable`: each put is fsynced (file and directory), so it survives a
   * host crash. Atomic rename alone already survives a daemon crash, which
   * is all a record needs when nothing it describes outlives a reboot.
   */
  constructor(
    private readonly dir: string,
    private readonly kind: string,
    private readonly durable = true,
  ) {}

  /** Reads every record file; unreadable ones are logged and skipped. */
  async load(logger: Logger): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.includes('.tmp-')) {
        await rm(path, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const rec = JSON.parse(await readFile(path, 'utf8')) as T;
        if (typeof rec.id !== 'string' || `${rec.id}.json` !== name) throw new Error('id does not match the file name');
        this.records.set(rec.id, rec);
      } catch (err) {
        logger.error({ err, file: path, kind: this.kind }, 'ignoring unreadable record');
      }
    }
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  /** Exact id, else the one record whose id starts with `prefix` (as containerd accepts). */
  find(prefix: string): T | undefined {
    const exact = this.records.get(prefix);
    if (exact || prefix === '') return exact;
    let found: T | undefined;
    for (const [id, rec] of this.records) {
      if (!id.startsWith(prefix)) continue;
      if (found) return undefined;
      found = rec;
    }
    return found;
  }

  list(): T[] {
    return [...this.records.values()];
  }

  /** Stores `rec` in memory and on disk; the file is whole or absent, never half-written. */
  async put(rec: T): Promise<void> {
    this.records.set(rec.id, rec);
    const path = join(this.dir, `${rec.id}.json`);
    const tmp = `${path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(rec));
      if (this.durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    if (this.durable) await syncDir(this.dir);
  }

  async delete(id: string): Promise<void> {
    this.records.delete(id);
    await rm(join(this.dir, `${id}.json`), { force: true });
  }
}

/** Makes a rename durable: fsync of the directory holding it. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Wall-clock now in nanoseconds, as CRI's int64 string. */
export function nowNs(): string {
  return (BigInt(Date.now()) * 1_000_000n).toString();
}

export function emptyResources(): ResourcesRecord {
  return { cpuPeriod: 0, cpuQuota: 0, cpuShares: 0, memoryLimitBytes: 0, oomScoreAdj: 0, cpusetCpus: '', cpusetMems: '', memorySwapLimitBytes: 0, unified: {} };
}
