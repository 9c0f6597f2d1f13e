import type { CallContext } from '../../cri-api/server.js';
import type { ListContainerStatsRequest__Output } from '../../cri-api/generated/runtime/v1/ListContainerStatsRequest.js';
import type { ListContainerStatsResponse } from '../../cri-api/generated/runtime/v1/ListContainerStatsResponse.js';
import { selectContainers } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamContainerStatsRequest__Output } from '../../cri-api/generated/runtime/v1/StreamContainerStatsRequest.js';
import type { StreamContainerStatsResponse } from '../../cri-api/generated/runtime/v1/StreamContainerStatsResponse.js';

/** Running containers only; the filter selects as ListContainers' does. */
export async function ListContainerStats(rt: PodRuntime, req: ListContainerStatsRequest__Output, _ctx: CallContext): Promise<ListContainerStatsResponse> {
  return { stats: await rt.stats.listContainerStats(selectContainers(rt.listContainers(), req.filter)) };
}

/** ListContainerStats' answer as a stream of batches. */
export async function StreamContainerStats(rt: PodRuntime, req: StreamContainerStatsRequest__Output, send: (m: StreamContainerStatsResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { stats } = await ListContainerStats(rt, { filter: req.filter }, ctx);
  await sendInBatches(stats ?? [], (container_stats) => ({ container_stats }), send);
}
