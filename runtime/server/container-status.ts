import type { CallContext } from '../../cri-api/server.js';
import type { ContainerStatus } from '../../cri-api/generated/runtime/v1/ContainerStatus.js';
import type { ContainerStatusRequest__Output } from '../../cri-api/generated/runtime/v1/ContainerStatusRequest.js';
import type { ContainerStatusResponse } from '../../cri-api/generated/runtime/v1/ContainerStatusResponse.js';
import type { LinuxContainerResources } from '../../cri-api/generated/runtime/v1/LinuxContainerResources.js';
import type { MountPropagation } from '../../cri-api/generated/runtime/v1/MountPropagation.js';
import { notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import type { ContainerRecord, ResourcesRecord } from '../records/store.js';

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
        : { container_path: m.containerPath, host_path: m.hostPath, readonly: m.readonly, propagation: m.propagation as MountPropagation },
    ),
    log_path: c.logPath,
    resources: { linux: linuxResources(c.resources) },
    user: { linux: { uid: String(c.user.uid), gid: String(c.user.gid), supplemental_groups: (c.user.additionalGids ?? []).map(String) } },
  };
}

/** Answered from memory. */
export async function ContainerStatus(rt: PodRuntime, req: ContainerStatusRequest__Output, _ctx: CallContext): Promise<ContainerStatusResponse> {
  const id = requireId(req.container_id, 'container_id');
  const c = rt.getContainer(id);
  if (!c) throw notFound(`container "${id}" not found`);
  const res: ContainerStatusResponse = { status: containerStatus(c, rt.imageNames(c)) };
  if (req.verbose) {
    const pod = rt.sandboxes.get(c.sandboxId);
    res.info = {
      info: JSON.stringify({
        sandboxID: c.sandboxId,
        pid: pod?.pid ?? 0,
        tty: c.tty ? (c.terminal ? true : 'requested; running without a terminal (no runsc reaper)') : false,
        user: c.user,
        env: c.env.map((e) => e.split('=', 1)[0]),
        cwd: c.cwd,
        capabilities: c.capabilities,
        stopSignal: c.stopSignal,
        runDir: rt.containerDir(c.id),
      }),
    };
  }
  return res;
}
