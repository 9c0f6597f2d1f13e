import type { CallContext } from '../../cri-api/server.js';
import type { ListPodSandboxStatsRequest__Output } from '../../cri-api/generated/runtime/v1/ListPodSandboxStatsRequest.js';
import type { ListPodSandboxStatsResponse } from '../../cri-api/generated/runtime/v1/ListPodSandboxStatsResponse.js';
import { selectSandboxes } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamPodSandboxStatsRequest__Output } from '../../cri-api/generated/runtime/v1/StreamPodSandboxStatsRequest.js';
import type { StreamPodSandboxStatsResponse } from '../../cri-api/generated/runtime/v1/StreamPodSandboxStatsResponse.js';

/** Ready pods only; the filter selects as ListPodSandbox's does. */
export async function ListPodSandboxStats(rt: PodRuntime, req: ListPodSandboxStatsRequest__Output, _ctx: CallContext): Promise<ListPodSandboxStatsResponse> {
  return { stats: await rt.stats.listPodSandboxStats(selectSandboxes(rt.listSandboxes(), req.filter)) };
}

/** ListPodSandboxStats' answer as a stream of batches. */
export async function StreamPodSandboxStats(rt: PodRuntime, req: StreamPodSandboxStatsRequest__Output, send: (m: StreamPodSandboxStatsResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { stats } = await ListPodSandboxStats(rt, { filter: req.filter }, ctx);
  await sendInBatches(stats ?? [], (pod_sandbox_stats) => ({ pod_sandbox_stats }), send);
}
