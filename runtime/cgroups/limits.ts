/**
 * The sandbox cgroup's limits from its containers' (gVisor's containerd
 * shim does the same sum): a pod sandbox is one host cgroup, so the most
 * the host can enforce is the pod's total. Pure arithmetic; files.ts writes it.
 */

/** One container's CRI limits, as the records keep them (0 = unset). */
export interface ContainerLimits {
  memoryLimitBytes: number;
  cpuQuota: number;
  cpuPeriod: number;
  cpuShares: number;
}

/** What the sandbox itself (sentry, gofers) needs besides its containers. */
export interface SandboxOverhead {
  memoryBytes: number;
  /** CPU in thousandths of a core. */
  cpuMillis: number;
}

/** The sandbox cgroup's limits; undefined = unlimited (the parent's limit holds). */
export interface SandboxLimits {
  memoryBytes?: number;
  /** CFS quota per `cpuPeriodUs`. */
  cpuQuotaUs?: number;
  cpuPeriodUs: number;
  /** cgroup v1 cpu.shares (converted to cpu.weight on v2). */
  cpuShares: number;
}

/**
 * Default overhead: an idle sentry with its gofer charges about 12 MiB
 * here (measured with runsc 20240729, systrap); the rest is headroom for
 * the sentry's own caches and netstack buffers.
 */
export const DEFAULT_SANDBOX_OVERHEAD: SandboxOverhead = { memoryBytes: 64 * 1024 * 1024, cpuMillis: 0 };

/** The CFS period every sandbox gets; containers' quotas are rescaled to it. */
export const CPU_PERIOD_US = 100_000;
const DEFAULT_PERIOD_US = 100_000;
const MIN_SHARES = 2;
/**
 * The shares of a sandbox none of whose containers asked for any (or with
 * no container yet): the least, as kubelet gives a BestEffort pod and
 * containerd a pod's sandbox. At the default 1024 every idle sandbox (a
 * gVisor one burns ~45 mcores here) weighed as much as a whole busy host
 * process, and a node full of them starved kubelet, the daemon and CNI
 * plugins: CNI ADD timed out.
 */
export const SANDBOX_CPU_SHARES = MIN_SHARES;
const MAX_SHARES = 262_144;
/** The kernel's floor for a CFS quota. */
const MIN_QUOTA_US = 1_000;

/**
 * Sums the containers' limits. Memory and CPU quota are set only when every
 * container has one (one unlimited container makes the pod unlimited) and
 * there is at least one container, and then carry the overhead on top;
 * shares add up whatever is set, overhead included, and are the least
 * when none is.
 */
export function sandboxLimits(containers: readonly ContainerLimits[], overhead: SandboxOverhead): SandboxLimits {
  const out: SandboxLimits = { cpuPeriodUs: CPU_PERIOD_US, cpuShares: SANDBOX_CPU_SHARES };
  if (containers.length === 0) return out;
  if (containers.every((c) => c.memoryLimitBytes > 0)) {
    out.memoryBytes = containers.reduce((sum, c) => sum + c.memoryLimitBytes, 0) + overhead.memoryBytes;
  }
  if (containers.every((c) => c.cpuQuota > 0)) {
    const quota = containers.reduce((sum, c) => sum + (c.cpuQuota * CPU_PERIOD_US) / (c.cpuPeriod > 0 ? c.cpuPeriod : DEFAULT_PERIOD_US), 0);
    out.cpuQuotaUs = Math.max(MIN_QUOTA_US, Math.ceil(quota + (overhead.cpuMillis * CPU_PERIOD_US) / 1000));
  }
  const shares = containers.reduce((sum, c) => sum + c.cpuShares, 0);
  if (shares > 0) out.cpuShares = Math.min(MAX_SHARES, Math.max(MIN_SHARES, shares + Math.round((overhead.cpuMillis * 1024) / 1000)));
  return out;
}

/** cgroup v2 cpu.weight for v1 shares (the conversion runc and the kernel docs use). */
export function sharesToWeight(shares: number): number {
  return 1 + Math.floor(((shares - MIN_SHARES) * 9999) / (MAX_SHARES - MIN_SHARES));
}
