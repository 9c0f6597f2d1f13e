import type { CallContext } from '../../cri-api/server.js';
import type { RemoveContainerRequest__Output } from '../../cri-api/generated/runtime/v1/RemoveContainerRequest.js';
import type { RemoveContainerResponse } from '../../cri-api/generated/runtime/v1/RemoveContainerResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** Idempotent: an unknown container succeeds; a running one is killed first. */
export async function RemoveContainer(rt: PodRuntime, req: RemoveContainerRequest__Output, _ctx: CallContext): Promise<RemoveContainerResponse> {
  await rt.removeContainer(requireId(req.container_id, 'container_id'));
  return {};
}
