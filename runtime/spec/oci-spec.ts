/**
 * Pure builders of OCI runtime specs for runsc: the pod's sandbox (infra)
 * container and its app containers. Inputs are plain typed objects, so the
 * CRI layer maps CRI fields to them and this file knows nothing of CRI.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/index.js';
import { resolveCapabilities } from './capabilities.js';
import { SECCOMP_HELPER_PATH } from '../seccomp/exec-helper.js';

// --- The OCI runtime-spec subset gvisor-cri writes ---------------------------

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable?: string[];
  ambient?: string[];
}

export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities?: OciCapabilities;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciNamespace {
  type: 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup';
  path?: string;
}

export interface OciResources {
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  memory?: { limit?: number; swap?: number };
  pids?: { limit: number };
}

/** OCI seccomp profile; passed through as given (runsc needs --oci-seccomp to load it). */
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: { names: string[]; action: string; errnoRet?: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] }[];
}

export interface OciLinux {
  namespaces: OciNamespace[];
  resources?: OciResources;
  cgroupsPath?: string;
  sysctl?: Record<string, string>;
  seccomp?: OciSeccomp;
  maskedPaths?: string[];
  readonlyPaths?: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: OciLinux;
}

// --- Annotations runsc groups containers by (gvisor.md "One sandbox per pod") -

export const ANNOTATION_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
export const ANNOTATION_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';

// --- Defaults, as containerd's CRI plugin sets them --------------------------

export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function standardMounts(privileged: boolean): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] },
  ];
}

/** The pod-wide files every container sees unless it mounts its own. */
export interface PodEtcFiles {
  resolvConf?: string;
  hosts?: string;
  hostname?: string;
}

function etcMounts(files: PodEtcFiles | undefined, taken: ReadonlySet<string>, readonly: boolean): OciMount[] {
  const out: OciMount[] = [];
  const add = (source: string | undefined, destination: string): void => {
    if (source && !taken.has(destination)) out.push({ destination, type: 'bind', source, options: ['rbind', 'rprivate', readonly ? 'ro' : 'rw'] });
  };
  add(files?.hosts, '/etc/hosts');
  add(files?.resolvConf, '/etc/resolv.conf');
  add(files?.hostname, '/etc/hostname');
  return out;
}

/** oom_score_adj of this daemon: nothing it starts may ask for less (no CAP_SYS_RESOURCE). */
export async function readDaemonOomScoreAdj(): Promise<number> {
  const text = await readFile('/proc/self/oom_score_adj', 'utf8');
  const n = Number.parseInt(text.trim(), 10);
  return Number.isFinite(n) ? n : 0;
}

function clampOomScoreAdj(requested: number | undefined, floor: number): number {
  const v = requested ?? floor;
  return Math.min(1000, Math.max(v, floor));
}

function caps(list: string[]): OciCapabilities {
  return { bounding: [...list], effective: [...list], permitted: [...list] };
}

// --- Sandbox (infra) container -----------------------------------------------

export interface SandboxSpecInput {
  /** The sandbox's id; becomes the sandbox-id app containers name. */
  id: string;
  hostname: string;
  /** Infra rootfs (read-only, shared by all pods) and its argv. */
  rootfsDir: string;
  args: string[];
  /** Path of the pod's network namespace; undefined for host network. */
  netnsPath?: string;
  annotations?: Record<string, string>;
  /**
   * The sandbox's own host cgroup (sentry and gofers), made beforehand by
   * the daemon. Not the dev.gvisor.spec.cgroup-parent annotation: runsc
   * 20240729 takes that as the sandbox's cgroup itself, writes the spec's
   * limits to it and removes it on delete, i.e. it would use and then
   * delete kubelet's pod cgroup.
   */
  cgroupsPath?: string;
  sysctls?: Record<string, string>;
  etcFiles?: PodEtcFiles;
  /** Requested oom_score_adj; raised to the daemon's own when lower. */
  oomScoreAdj?: number;
  daemonOomScoreAdj: number;
  /** Pod-level limits (the sandbox's share of the node). */
  resources?: OciResources;
}

export function buildSandboxSpec(input: SandboxSpecInput): OciSpec {
  const namespaces: OciNamespace[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (input.netnsPath !== undefined) namespaces.push({ type: 'network', path: input.netnsPath });
  const annotations: Record<string, string> = { ...input.annotations, [ANNOTATION_CONTAINER_TYPE]: 'sandbox', [ANNOTATION_SANDBOX_ID]: input.id };
  const linux: OciLinux = { namespaces, maskedPaths: [...DEFAULT_MASKED_PATHS], readonlyPaths: [...DEFAULT_READONLY_PATHS] };
  if (input.sysctls && Object.keys(input.sysctls).length > 0) linux.sysctl = { ...input.sysctls };
  if (input.resources) linux.resources = input.resources;
  if (input.cgroupsPath) linux.cgroupsPath = input.cgroupsPath;
  return {
    ociVersion: '1.0.2',
    process: {
      user: { uid: 65535, gid: 65535 },
      args: [...input.args],
      env: [DEFAULT_PATH],
      cwd: '/',
      capabilities: caps([]),
      noNewPrivileges: true,
      oomScoreAdj: clampOomScoreAdj(input.oomScoreAdj, input.daemonOomScoreAdj),
    },
    root: { path: input.rootfsDir, readonly: true },
    hostname: input.hostname,
    mounts: [...standardMounts(false), ...etcMounts(input.etcFiles, new Set(), true)],
    annotations,
    linux,
  };
}

// --- App container -------------------------------------------------------------

export type MountPropagation = 'private' | 'rslave' | 'rshared';

export interface BindMount {
  hostPath: string;
  containerPath: string;
  readonly: boolean;
  propagation?: MountPropagation;
  /**
   * Read-only all the way down (KEP-3857). A gVisor bind is one sentry mount,
   * read-only as a whole, host mounts inside it included: such a volume just
   * gets no submounts of its own (path-mounts.ts submountsOf).
   */
  recursiveReadOnly?: boolean;
  /** An image volume: the image as named and its id (hostPath is its snapshot). */
  image?: { image: string; imageRef: string };
}

export interface ContainerResources {
  cpuShares?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  memoryLimitBytes?: number;
  pidsLimit?: number;
}

export interface ContainerSpecInput {
  /** The pod's sandbox id (the infra container's id). */
  sandboxId: string;
  rootfsDir: string;
  readonlyRootfs: boolean;
  args: string[];
  env: string[];
  cwd: string;
  user: OciUser;
  terminal: boolean;
  hostname: string;
  capabilities: { add: readonly string[]; drop: readonly string[] };
  privileged: boolean;
  /** Capabilities the runsc in use accepts (runsc-features). */
  knownCapabilities: readonly string[];
  noNewPrivileges: boolean;
  mounts: readonly BindMount[];
  etcFiles?: PodEtcFiles;
  /** Overrides of the default masked / read-only paths (CRI's masked_paths / readonly_paths). */
  maskedPaths?: readonly string[];
  readonlyPaths?: readonly string[];
  resources?: ContainerResources;
  oomScoreAdj?: number;
  daemonOomScoreAdj: number;
  sysctls?: Record<string, string>;
  seccomp?: OciSeccomp;
  /** Host path of the seccomp exec helper, mounted at SECCOMP_HELPER_PATH when a filter applies. */
  seccompHelper?: string;
  rlimits?: OciRlimit[];
  annotations?: Record<string, string>;
  /** Join the sandbox's own PID namespace (pod or host PID sharing) instead of getting one of its own. */
  sharedPidNamespace?: boolean;
  /** Mounts that stand in for masked and read-only paths (path-mounts.ts). */
  pathMounts?: readonly OciMount[];
  /** Host mounts inside read-only volumes, each with its own flags (path-mounts.ts submountsOf). */
  submounts?: readonly OciMount[];
}

function propagationOption(p: MountPropagation | undefined): string {
  return p === 'rslave' ? 'rslave' : p === 'rshared' ? 'rshared' : 'rprivate';
}

function containerResources(r: ContainerResources | undefined): OciResources | undefined {
  if (!r) return undefined;
  const out: OciResources = {};
  const cpu: NonNullable<OciResources['cpu']> = {};
  if (r.cpuShares) cpu.shares = r.cpuShares;
  if (r.cpuQuota) cpu.quota = r.cpuQuota;
  if (r.cpuPeriod) cpu.period = r.cpuPeriod;
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  if (r.memoryLimitBytes) out.memory = { limit: r.memoryLimitBytes };
  if (r.pidsLimit) out.pids = { limit: r.pidsLimit };
  return Object.keys(out).length > 0 ? out : undefined;
}

export function buildContainerSpec(input: ContainerSpecInput): OciSpec {
  const capList = resolveCapabilities({ add: input.capabilities.add, drop: input.capabilities.drop, privileged: input.privileged, known: input.knownCapabilities });
  const taken = new Set(input.mounts.map((m) => m.containerPath));
  // A container's own mount replaces a standard one at the same path.
  const standard = standardMounts(input.privileged).filter((m) => !taken.has(m.destination));
  const binds: OciMount[] = input.mounts.map((m) => ({
    destination: m.containerPath,
    type: 'bind',
    source: m.hostPath,
    options: ['rbind', propagationOption(m.propagation), m.readonly ? 'ro' : 'rw'],
  }));
  // Without a pid entry runsc puts the container in the sandbox's root PID namespace (pid 1 is the infra process).
  const namespaces: OciNamespace[] = input.sharedPidNamespace ? [{ type: 'ipc' }, { type: 'uts' }, { type: 'mount' }] : [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  const linux: OciLinux = {
    namespaces,
    maskedPaths: input.privileged ? [] : [...(input.maskedPaths ?? DEFAULT_MASKED_PATHS)],
    readonlyPaths: input.privileged ? [] : [...(input.readonlyPaths ?? DEFAULT_READONLY_PATHS)],
  };
  const resources = containerResources(input.resources);
  if (resources) linux.resources = resources;
  if (input.sysctls && Object.keys(input.sysctls).length > 0) linux.sysctl = { ...input.sysctls };
  if (input.seccomp && !input.privileged) linux.seccomp = input.seccomp;
  const helper: OciMount[] = linux.seccomp && input.seccompHelper ? [{ destination: SECCOMP_HELPER_PATH, type: 'bind', source: input.seccompHelper, options: ['rbind', 'rprivate', 'ro'] }] : [];
  const process: OciProcess = {
    terminal: input.terminal,
    user: { uid: input.user.uid, gid: input.user.gid, additionalGids: [...(input.user.additionalGids ?? [])] },
    args: [...input.args],
    env: input.env.some((e) => e.startsWith('PATH=')) ? [...input.env] : [DEFAULT_PATH, ...input.env],
    cwd: input.cwd || '/',
    capabilities: caps(capList),
    noNewPrivileges: input.noNewPrivileges,
    oomScoreAdj: clampOomScoreAdj(input.oomScoreAdj, input.daemonOomScoreAdj),
  };
  if (input.rlimits && input.rlimits.length > 0) process.rlimits = input.rlimits.map((r) => ({ ...r }));
  return {
    ociVersion: '1.0.2',
    process,
    // Writable rootfs: runsc's --overlay2 keeps writes inside the sandbox,
    // so the shared snapshot directory is never modified.
    root: { path: input.rootfsDir, readonly: input.readonlyRootfs },
    hostname: input.hostname,
    mounts: [...standard, ...etcMounts(input.etcFiles, taken, false), ...binds, ...(input.submounts ?? []), ...(input.privileged ? [] : (input.pathMounts ?? [])), ...helper],
    annotations: { ...input.annotations, [ANNOTATION_CONTAINER_TYPE]: 'container', [ANNOTATION_SANDBOX_ID]: input.sandboxId },
    linux,
  };
}

/** Process spec for `runsc exec --process`, inheriting the container's identity. */
export interface ExecProcessInput {
  args: string[];
  env: string[];
  cwd: string;
  user: OciUser;
  terminal: boolean;
  capabilities: string[];
  noNewPrivileges?: boolean;
}

export function buildExecProcess(input: ExecProcessInput): OciProcess {
  return {
    terminal: input.terminal,
    user: { uid: input.user.uid, gid: input.user.gid, additionalGids: [...(input.user.additionalGids ?? [])] },
    args: [...input.args],
    env: input.env.some((e) => e.startsWith('PATH=')) ? [...input.env] : [DEFAULT_PATH, ...input.env],
    cwd: input.cwd || '/',
    capabilities: caps(input.capabilities),
    noNewPrivileges: input.noNewPrivileges ?? false,
  };
}

/** Writes `spec` as `bundleDir/config.json`. Under the run dir (tmpfs): atomic, not durable (common/atomic-write.ts). */
export async function writeBundle(bundleDir: string, spec: OciSpec): Promise<string> {
  await mkdir(bundleDir, { recursive: true, mode: 0o700 });
  const path = join(bundleDir, 'config.json');
  await writeFileAtomic(path, JSON.stringify(spec, null, 2), { durability: 'atomic', mode: 0o600 });
  return path;
}

/** The OCI spec a bundle was written with (writeBundle). */
export async function readBundleSpec(bundleDir: string): Promise<OciSpec> {
  return JSON.parse(await readFile(join(bundleDir, 'config.json'), 'utf8')) as OciSpec;
}
