import type { CallContext } from '../../cri-api/server.js';
import type { StopContainerRequest__Output } from '../../cri-api/generated/runtime/v1/StopContainerRequest.js';
import type { StopContainerResponse } from '../../cri-api/generated/runtime/v1/StopContainerResponse.js';
import { requireId, requireNonNegative } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** The stop signal (CRI's, else the image's, else SIGTERM), then SIGKILL after `timeout` seconds. */
export async function StopContainer(rt: PodRuntime, req: StopContainerRequest__Output, _ctx: CallContext): Promise<StopContainerResponse> {
  const id = requireId(req.container_id, 'container_id');
  const timeout = requireNonNegative(req.timeout || '0', 'timeout');
  await rt.stopContainer(id, timeout);
  return {};
}
