import type { CallContext } from '../../cri-api/server.js';
import type { UpdateContainerResourcesRequest__Output } from '../../cri-api/generated/runtime/v1/UpdateContainerResourcesRequest.js';
import type { UpdateContainerResourcesResponse } from '../../cri-api/generated/runtime/v1/UpdateContainerResourcesResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { resourcesRecord } from '../spec/container-config.js';

/**
 * Records new resources (set fields replace, unset ones keep theirs).
 * runsc applies limits to the whole sandbox and cannot update one
 * sub-container, so they are kept and reported only.
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
    rt.logOnce('UpdateContainerResources: resources are recorded and reported; runsc cannot change limits of a running sub-container');
  });
  return {};
}
