import type { CallContext } from '../../cri-api/server.js';
import type { UpdateContainerResourcesRequest__Output } from '../../cri-api/generated/runtime/v1/UpdateContainerResourcesRequest.js';
import type { UpdateContainerResourcesResponse } from '../../cri-api/generated/runtime/v1/UpdateContainerResourcesResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

export async function UpdateContainerResources(rt: PodRuntime, req: UpdateContainerResourcesRequest__Output, _ctx: CallContext): Promise<UpdateContainerResourcesResponse> {
  await rt.updateContainerResources(requireId(req.container_id, 'container_id'), req.linux);
  return {};
}
