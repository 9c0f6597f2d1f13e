import type { CallContext } from '../../cri-api/server.js';
import type { UpdateContainerResourcesRequest__Output } from '../../cri-api/generated/runtime/v1/UpdateContainerResourcesRequest.js';
import type { UpdateContainerResourcesResponse } from '../../cri-api/generated/runtime/v1/UpdateContainerResourcesResponse.js';
import { wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { podLabel } from '../records/store.js';
import { resourcesRecord } from '../spec/container-config.js';
import { applyPodLimits } from './update-pod-sandbox-resources.js';

/**
 * Records new resources (set fields replace, unset ones keep theirs) and
 * rewrites the sandbox cgroup's limits, the pod's sum: the host cannot
 * limit one container inside a gVisor sandbox (README "Resources and cgroups").
 */
export async function UpdateContainerResources(rt: PodRuntime, req: UpdateContainerResourcesRequest__Output, _ctx: CallContext): Promise<UpdateContainerResourcesResponse> {
  const c = rt.requireContainer(requireId(req.container_id, 'container_id'));
  const linux = req.linux;
  await rt.locks.run(c.id, async () => {
    if (!linux) return;
    const next = resourcesRecord(linux);
    const merged = { ...c.resources };
    for (const k of Object.keys(next) as (keyof typeof next)[]) {
      const v = next[k];
      if (k === 'unified' ? Object.keys(v as object).length > 0 : v !== 0 && v !== '') (merged as Record<string, unknown>)[k] = v;
    }
    c.resources = merged;
    await rt.containers.put(c);
    const pod = rt.sandboxes.get(c.sandboxId);
    if (!pod) return;
    try {
      await applyPodLimits(rt, pod);
    } catch (err) {
      throw wrapError(err, `update resources of container ${c.name} (${c.id.slice(0, 12)}) in pod ${podLabel(pod)}`);
    }
  });
  return {};
}
