/**
 * How CRI sees a record: the status, state and resources messages every
 * status, list and event answer is built from, and the label selector
 * the list RPCs filter with.
 */
import type { ContainerStatus } from '../../cri-api/generated/runtime/v1/ContainerStatus.js';
import type { LinuxContainerResources } from '../../cri-api/generated/runtime/v1/LinuxContainerResources.js';
import type { MountPropagation } from '../../cri-api/generated/runtime/v1/MountPropagation.js';
import type { PodSandboxStatus } from '../../cri-api/generated/runtime/v1/PodSandboxStatus.js';
import type { ContainerRecord, ResourcesRecord, SandboxRecord } from './store.js';

export type CriContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export function containerState(c: ContainerRecord): CriContainerState {
  return c.phase === 'created' ? 'CONTAINER_CREATED' : c.phase === 'running' ? 'CONTAINER_RUNNING' : c.phase === 'exited' ? 'CONTAINER_EXITED' : 'CONTAINER_UNKNOWN';
}

export function linuxResources(r: ResourcesRecord): LinuxContainerResources {
  return {
    cpu_period: String(r.cpuPeriod),
    cpu_quota: String(r.cpuQuota),
    cpu_shares: String(r.cpuShares),
    memory_limit_in_bytes: String(r.memoryLimitBytes),
    oom_score_adj: String(r.oomScoreAdj),
    cpuset_cpus: r.cpusetCpus,
    cpuset_mems: r.cpusetMems,
    memory_swap_limit_in_bytes: String(r.memorySwapLimitBytes),
    unified: r.unified,
  };
}

export function containerStatus(c: ContainerRecord, names: { image: string; imageRef: string }): ContainerStatus {
  return {
    id: c.id,
    metadata: { name: c.name, attempt: c.attempt },
    state: containerState(c),
    created_at: c.createdAtNs,
    started_at: c.startedAtNs,
    finished_at: c.finishedAtNs,
    exit_code: c.exitCode,
    image: { image: names.image },
    image_ref: names.imageRef,
    image_id: c.imageId,
    reason: c.reason,
    message: c.message,
    labels: c.labels,
    annotations: c.annotations,
    mounts: c.mounts.map((m) =>
      m.image
        ? { container_path: m.containerPath, host_path: '', readonly: true, propagation: m.propagation as MountPropagation, image: { image: m.image.image, image_ref: m.image.imageRef } }
        : { container_path: m.containerPath, host_path: m.hostPath, readonly: m.readonly, propagation: m.propagation as MountPropagation, recursive_read_only: m.recursiveReadOnly ?? false },
    ),
    log_path: c.logPath,
    resources: { linux: linuxResources(c.resources) },
    user: { linux: { uid: String(c.user.uid), gid: String(c.user.gid), supplemental_groups: (c.user.additionalGids ?? []).map(String) } },
  };
}

export function sandboxState(s: SandboxRecord): 'SANDBOX_READY' | 'SANDBOX_NOTREADY' {
  return s.phase === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY';
}

export function sandboxStatus(s: SandboxRecord): PodSandboxStatus {
  // Host-network pods have no pod IP of their own: kubelet uses the node's.
  const ips = s.hostNetwork ? [] : s.ips;
  return {
    id: s.id,
    metadata: { name: s.name, uid: s.uid, namespace: s.namespace, attempt: s.attempt },
    state: sandboxState(s),
    created_at: s.createdAtNs,
    network: { ip: ips[0] ?? '', additional_ips: ips.slice(1).map((ip) => ({ ip })) },
    linux: { namespaces: { options: { network: s.namespaceModes.network as 'POD', pid: s.namespaceModes.pid as 'POD', ipc: s.namespaceModes.ipc as 'POD' } } },
    labels: s.labels,
    annotations: s.annotations,
    runtime_handler: s.runtimeHandler,
  };
}

/** CRI's label selector: every key of the selector present with its value. */
function matchesLabels(labels: Record<string, string>, selector: Record<string, string> | undefined): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** What the List* filters of containers share (ContainerFilter, ContainerStatsFilter). */
export interface ContainerSelector {
  id?: string;
  pod_sandbox_id?: string;
  label_selector?: Record<string, string>;
}

/** What the List* filters of pods share (PodSandboxFilter, PodSandboxStatsFilter). */
export interface SandboxSelector {
  id?: string;
  label_selector?: Record<string, string>;
}

/** The containers a filter selects: id and pod id match a prefix, as containerd's do; every selector label must match. */
export function selectContainers(list: readonly ContainerRecord[], f: ContainerSelector | null | undefined): ContainerRecord[] {
  return list.filter((c) => (!f?.id || c.id.startsWith(f.id)) && (!f?.pod_sandbox_id || c.sandboxId.startsWith(f.pod_sandbox_id)) && matchesLabels(c.labels, f?.label_selector));
}

/** The pods a filter selects: the id matches a prefix, as containerd's does; every selector label must match. */
export function selectSandboxes(list: readonly SandboxRecord[], f: SandboxSelector | null | undefined): SandboxRecord[] {
  return list.filter((s) => (!f?.id || s.id.startsWith(f.id)) && matchesLabels(s.labels, f?.label_selector));
}
