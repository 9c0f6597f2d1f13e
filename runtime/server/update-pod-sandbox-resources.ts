import type { CallContext } from '../../cri-api/server.js';
import type { UpdatePodSandboxResourcesRequest__Output } from '../../cri-api/generated/runtime/v1/UpdatePodSandboxResourcesRequest.js';
import type { UpdatePodSandboxResourcesResponse } from '../../cri-api/generated/runtime/v1/UpdatePodSandboxResourcesResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

export async function UpdatePodSandboxResources(rt: PodRuntime, req: UpdatePodSandboxResourcesRequest__Output, _ctx: CallContext): Promise<UpdatePodSandboxResourcesResponse> {
  await rt.updatePodSandboxResources(requireId(req.pod_sandbox_id, 'pod_sandbox_id'), req.resources, req.overhead);
  return {};
}
