/**
 * Sandbox and container records: what the runtime knows of each pod and
 * container, kept in memory for List/Status and persisted one JSON file per
 * object (common/atomic-write.ts) so a restarted daemon can rebuild itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isAtomicWriteTemp, KeyedLock, writeFileAtomic, type Durability } from '../../common/index.js';
import type { ContainerConfig__Output } from '../../cri-api/generated/runtime/v1/ContainerConfig.js';
import type { Logger } from '../../cri-api/logger.js';
import type { OciUser } from '../spec/oci-spec.js';

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
   * RunPodSandbox and UpdatePodSandboxResources announced them: shown in
   * verbose status; a non-zero overhead replaces the daemon's configured
   * sandbox overhead in the sandbox cgroup's limits.
   */
  podResources?: { resources: ResourcesRecord; overhead: ResourcesRecord };
  /**
   * The sandbox's host cgroup (relative to each hierarchy's root) and the
   * ancestors the daemon made for it, nearest first: removal takes all of
   * them away. Absent in records of daemons before cgroup placement.
   */
  cgroup?: { path: string; made: string[] };
}

/** Bind mount as CRI reports it back in ContainerStatus. */
export interface MountRecord {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  propagation: string;
  /** Asked for recursive read-only (KEP-3857); absent otherwise. */
  recursiveReadOnly?: boolean;
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

/**
 * One kind of record, one file each under `dir`. Every write of a record's
 * file (put, delete) goes through that record's lock here, whoever calls:
 * the exit path writes a container's record while an RPC may be writing it
 * too, and the file must end whole and as the record is now.
 */
export class RecordStore<T extends { id: string }> {
  private readonly records = new Map<string, T>();
  private readonly writes = new KeyedLock();

  /** `durability`: see the rule in common/atomic-write.ts. */
  constructor(
    private readonly dir: string,
    private readonly kind: string,
    private readonly durability: Durability,
  ) {}

  /**
   * Reads every record file. One that cannot be used (unreadable, not JSON,
   * its id not its file name, or lacking a field `check` requires) is moved
   * aside as `<file>.corrupt-<time>`, so the rest of the node comes back and
   * the next start does not trip on it again; its reason is logged (never its
   * content: records hold containers' environments) and given to `onCorrupt`.
   */
  async load(logger: Logger, check: RecordCheck = () => undefined, onCorrupt: (reason: string) => void = () => undefined): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (isAtomicWriteTemp(name)) {
        await rm(path, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      const { rec, problem } = await readRecord(path, name, check);
      if (rec) {
        this.records.set(rec.id, rec as unknown as T);
        continue;
      }
      const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      try {
        await rename(path, aside);
        logger.error({ file: path, movedTo: aside, kind: this.kind, reason: problem }, 'unreadable record moved aside; recovery goes on without it');
      } catch (err) {
        logger.error({ err, file: path, kind: this.kind, reason: problem }, 'unreadable record could not be moved aside; recovery goes on without it');
      }
      onCorrupt(problem);
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

  /**
   * Stores `rec` in memory and on disk; the file is whole or absent, never
   * half-written. Serialised inside the record's lock, so the last write
   * to land holds every change made before it was called.
   */
  async put(rec: T): Promise<void> {
    this.records.set(rec.id, rec);
    await this.writes.run(rec.id, async () => {
      // Removed while this write waited: writing now would bring the file back.
      if (this.records.get(rec.id) !== rec) return;
      await writeFileAtomic(this.path(rec.id), JSON.stringify(rec), { durability: this.durability, mode: 0o600 });
    });
  }

  async delete(id: string): Promise<void> {
    this.records.delete(id);
    await this.writes.run(id, () => rm(this.path(id), { force: true }));
  }

  private path(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}

/** Why a parsed record cannot be used, or undefined when it can. */
export type RecordCheck = (rec: Record<string, unknown>) => string | undefined;

/** The file at `path` as a record, or why it is none. Reasons never quote the file. */
async function readRecord(path: string, name: string, check: RecordCheck): Promise<{ rec?: Record<string, unknown> & { id: string }; problem: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return { problem: `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // The parser's message would quote the text, which may hold a container's environment.
    return { problem: 'not JSON' };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { problem: 'not a JSON object' };
  const rec = doc as Record<string, unknown>;
  if (typeof rec.id !== 'string' || `${rec.id}.json` !== name) return { problem: 'its id does not match the file name' };
  const problem = check(rec);
  return problem ? { problem } : { rec: rec as Record<string, unknown> & { id: string }, problem: '' };
}

type FieldKind = 'string' | 'number' | 'boolean' | 'object' | 'array' | readonly string[];

/** The first field of `rec` not of its kind in `fields`. */
function fieldProblem(rec: Record<string, unknown>, fields: Readonly<Record<string, FieldKind>>): string | undefined {
  for (const [field, kind] of Object.entries(fields)) {
    const v = rec[field];
    const ok = Array.isArray(kind) ? kind.includes(v as string)
      : kind === 'array' ? Array.isArray(v)
      : kind === 'object' ? typeof v === 'object' && v !== null && !Array.isArray(v)
      : typeof v === kind;
    if (!ok) return `field ${field} is not ${Array.isArray(kind) ? `one of ${kind.join(', ')}` : `a${kind === 'object' || kind === 'array' ? 'n' : ''} ${kind}`}`;
  }
  return undefined;
}

/** The fields of a pod record that recovery and the CRI views read without checking. */
export const checkSandboxRecord: RecordCheck = (rec) =>
  fieldProblem(rec, { phase: ['creating', 'ready', 'notready'], name: 'string', namespace: 'string', uid: 'string', attempt: 'number', labels: 'object', annotations: 'object', hostNetwork: 'boolean' });

/** The fields of a container record that recovery and the CRI views read without checking. */
export const checkContainerRecord: RecordCheck = (rec) =>
  fieldProblem(rec, { phase: ['creating', 'created', 'running', 'exited'], sandboxId: 'string', name: 'string', attempt: 'number', labels: 'object', annotations: 'object', mounts: 'array', env: 'array' });

/** Wall-clock now in nanoseconds, as CRI's int64 string. */
export function nowNs(): string {
  return (BigInt(Date.now()) * 1_000_000n).toString();
}

export function emptyResources(): ResourcesRecord {
  return { cpuPeriod: 0, cpuQuota: 0, cpuShares: 0, memoryLimitBytes: 0, oomScoreAdj: 0, cpusetCpus: '', cpusetMems: '', memorySwapLimitBytes: 0, unified: {} };
}

/** A new pod or container id: 64 hex digits, as containerd's. */
export function newRecordId(): string {
  return randomBytes(32).toString('hex');
}

/** A pod as the log names it: namespace/name and a short id. */
export function podLabel(s: SandboxRecord): string {
  return `${s.namespace}/${s.name} (${s.id.slice(0, 12)})`;
}

/** What every new container record starts with: its identity in the pod, no history yet, the caller's labels and log path. */
export function newContainerFields(id: string, pod: SandboxRecord, config: ContainerConfig__Output): Pick<ContainerRecord, 'id' | 'sandboxId' | 'name' | 'attempt' | 'phase' | 'createdAtNs' | 'startedAtNs' | 'finishedAtNs' | 'exitCode' | 'reason' | 'message' | 'labels' | 'annotations' | 'logPath'> {
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
