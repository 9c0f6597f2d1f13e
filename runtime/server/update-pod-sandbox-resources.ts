import type { CallContext } from '../../cri-api/server.js';
import type { UpdatePodSandboxResourcesRequest__Output } from '../../cri-api/generated/runtime/v1/UpdatePodSandboxResourcesRequest.js';
import type { UpdatePodSandboxResourcesResponse } from '../../cri-api/generated/runtime/v1/UpdatePodSandboxResourcesResponse.js';
import { notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { resourcesRecord } from '../spec/container-config.js';

/** Records the pod-level resources kubelet announces (a best-effort notification in CRI); see SandboxRecord.podResources. */
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
    rt.logOnce('UpdatePodSandboxResources: pod-level resources are recorded and reported; gVisor sandboxes run in the daemon\'s cgroup, so they are not enforced');
  });
  return {};
}
