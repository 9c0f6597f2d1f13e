import type { CallContext } from '../../cri-api/server.js';
import type { ReopenContainerLogRequest__Output } from '../../cri-api/generated/runtime/v1/ReopenContainerLogRequest.js';
import type { ReopenContainerLogResponse } from '../../cri-api/generated/runtime/v1/ReopenContainerLogResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** kubelet rotated the log file: write to a fresh file at the same path. */
export async function ReopenContainerLog(rt: PodRuntime, req: ReopenContainerLogRequest__Output, _ctx: CallContext): Promise<ReopenContainerLogResponse> {
  await rt.reopenContainerLog(requireId(req.container_id, 'container_id'));
  return {};
}
