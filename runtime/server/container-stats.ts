import type { CallContext } from '../../cri-api/server.js';
import type { ContainerStatsRequest__Output } from '../../cri-api/generated/runtime/v1/ContainerStatsRequest.js';
import type { ContainerStatsResponse } from '../../cri-api/generated/runtime/v1/ContainerStatsResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** A running container's usage; unknown and stopped containers are NOT_FOUND. */
export async function ContainerStats(rt: PodRuntime, req: ContainerStatsRequest__Output, _ctx: CallContext): Promise<ContainerStatsResponse> {
  const id = requireId(req.container_id, 'container_id');
  return { stats: await rt.stats.containerStats(id) };
}
