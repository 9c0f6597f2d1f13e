import type { CallContext } from '../../cri-api/server.js';
import type { ReopenContainerLogRequest__Output } from '../../cri-api/generated/runtime/v1/ReopenContainerLogRequest.js';
import type { ReopenContainerLogResponse } from '../../cri-api/generated/runtime/v1/ReopenContainerLogResponse.js';
import { failedPrecondition, wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** kubelet rotated the log file: write to a fresh file at the same path. */
export async function ReopenContainerLog(rt: PodRuntime, req: ReopenContainerLogRequest__Output, _ctx: CallContext): Promise<ReopenContainerLogResponse> {
  const c = rt.requireContainer(requireId(req.container_id, 'container_id'));
  if (c.phase !== 'running') throw failedPrecondition(`reopen log of container ${c.name} (${c.id.slice(0, 12)}): container is ${c.phase}, not running`);
  const writer = rt.io.get(c.id)?.writer;
  if (!writer) return {};
  try {
    await writer.reopen();
  } catch (err) {
    throw wrapError(err, `reopen log ${c.logPath} of container ${c.id.slice(0, 12)}`);
  }
  return {};
}
