import type { CallContext } from '../../cri-api/server.js';
import type { CheckpointContainerRequest__Output } from '../../cri-api/generated/runtime/v1/CheckpointContainerRequest.js';
import type { CheckpointContainerResponse } from '../../cri-api/generated/runtime/v1/CheckpointContainerResponse.js';
import { requireAbsolutePath, requireId, requireNonNegative } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** Used when the request's timeout is 0 ("the CRI default"). */
export const DEFAULT_CHECKPOINT_TIMEOUT_S = 300;

/**
 * Writes a checkpoint of the container's gVisor sandbox to `location` as a
 * tar archive (see checkpoint-archive.ts); the container keeps running.
 * Restore: CreateContainer in a new pod with the archive's path as image.
 */
export async function CheckpointContainer(rt: PodRuntime, req: CheckpointContainerRequest__Output, _ctx: CallContext): Promise<CheckpointContainerResponse> {
  const id = requireId(req.container_id, 'container_id');
  const location = requireAbsolutePath(req.location, 'location');
  const timeoutS = requireNonNegative(req.timeout, 'timeout') || DEFAULT_CHECKPOINT_TIMEOUT_S;
  await rt.checkpointContainer(id, location, timeoutS * 1000);
  return {};
}
