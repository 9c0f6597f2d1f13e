import type { CallContext } from '../../cri-api/server.js';
import type { ListContainerStatsRequest__Output } from '../../cri-api/generated/runtime/v1/ListContainerStatsRequest.js';
import type { ListContainerStatsResponse } from '../../cri-api/generated/runtime/v1/ListContainerStatsResponse.js';
import { matchesLabels } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamContainerStatsRequest__Output } from '../../cri-api/generated/runtime/v1/StreamContainerStatsRequest.js';
import type { StreamContainerStatsResponse } from '../../cri-api/generated/runtime/v1/StreamContainerStatsResponse.js';

/** Running containers only. Id and pod id filters match a prefix, as ListContainers' do. */
export async function ListContainerStats(rt: PodRuntime, req: ListContainerStatsRequest__Output, _ctx: CallContext): Promise<ListContainerStatsResponse> {
  const f = req.filter;
  const containers = rt
    .listContainers()
    .filter((c) => !f?.id || c.id.startsWith(f.id))
    .filter((c) => !f?.pod_sandbox_id || c.sandboxId.startsWith(f.pod_sandbox_id))
    .filter((c) => matchesLabels(c.labels, f?.label_selector));
  return { stats: await rt.stats.listContainerStats(containers) };
}

/** ListContainerStats' answer as a stream of batches. */
export async function StreamContainerStats(rt: PodRuntime, req: StreamContainerStatsRequest__Output, send: (m: StreamContainerStatsResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { stats } = await ListContainerStats(rt, { filter: req.filter }, ctx);
  await sendInBatches(stats ?? [], (container_stats) => ({ container_stats }), send);
}
