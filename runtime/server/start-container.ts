import type { CallContext } from '../../cri-api/server.js';
import type { StartContainerRequest__Output } from '../../cri-api/generated/runtime/v1/StartContainerRequest.js';
import type { StartContainerResponse } from '../../cri-api/generated/runtime/v1/StartContainerResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

export async function StartContainer(rt: PodRuntime, req: StartContainerRequest__Output, _ctx: CallContext): Promise<StartContainerResponse> {
  await rt.startContainer(requireId(req.container_id, 'container_id'));
  return {};
}
