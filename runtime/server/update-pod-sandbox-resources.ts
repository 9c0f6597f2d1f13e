import type { CallContext } from '../../cri-api/server.js';
import type { UpdatePodSandboxResourcesRequest__Output } from '../../cri-api/generated/runtime/v1/UpdatePodSandboxResourcesRequest.js';
import type { UpdatePodSandboxResourcesResponse } from '../../cri-api/generated/runtime/v1/UpdatePodSandboxResourcesResponse.js';
import { notFound, wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import { sandboxLimits, type SandboxOverhead } from '../cgroups/index.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { podLabel, type SandboxRecord } from '../records/store.js';
import { resourcesRecord } from '../spec/container-config.js';

/**
 * Records the pod-level resources kubelet announces; a pod overhead
 * (RuntimeClass overhead) replaces the configured sandbox overhead in the
 * sandbox cgroup's limits, which are rewritten at once.
 */
export async function UpdatePodSandboxResources(rt: PodRuntime, req: UpdatePodSandboxResourcesRequest__Output, _ctx: CallContext): Promise<UpdatePodSandboxResourcesResponse> {
  const id = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  const s = rt.getSandbox(id);
  if (!s) throw notFound(`update resources of pod sandbox "${id}": not found`);
  await rt.locks.run(s.id, async () => {
    const prev = s.podResources;
    s.podResources = {
      resources: req.resources ? resourcesRecord(req.resources) : (prev?.resources ?? resourcesRecord(null)),
      overhead: req.overhead ? resourcesRecord(req.overhead) : (prev?.overhead ?? resourcesRecord(null)),
    };
    await rt.sandboxes.put(s);
    try {
      await applyPodLimits(rt, s);
    } catch (err) {
      throw wrapError(err, `update resources of pod sandbox ${podLabel(s)}`);
    }
  });
  return {};
}

/**
 * Writes the sandbox cgroup's limits from the pod's containers that have
 * not exited (cgroups/limits.ts sums them). CreateContainer,
 * RemoveContainer and both Update*Resources call it under the pod's or
 * container's lock.
 */
export async function applyPodLimits(rt: PodRuntime, pod: SandboxRecord): Promise<void> {
  const cgroup = pod.cgroup;
  if (!cgroup) return;
  // Callers hold different locks (the pod's, or one container's): the sum is taken and written under one of its own.
  await rt.locks.run(`cgroup:${pod.id}`, async () => {
    const members = rt.containers.list().filter((c) => c.sandboxId === pod.id && c.phase !== 'exited');
    await rt.cgroups.setLimits(cgroup.path, sandboxLimits(members.map((c) => c.resources), podOverhead(rt, pod)));
  });
}

/** The pod's announced overhead when it has one, else the configured one. */
function podOverhead(rt: PodRuntime, pod: SandboxRecord): SandboxOverhead {
  const o = pod.podResources?.overhead;
  if (!o || (o.memoryLimitBytes === 0 && o.cpuQuota === 0)) return rt.cgroups.overhead;
  const cpuMillis = o.cpuQuota > 0 ? Math.ceil((o.cpuQuota * 1000) / (o.cpuPeriod > 0 ? o.cpuPeriod : 100_000)) : 0;
  return { memoryBytes: o.memoryLimitBytes, cpuMillis };
}
