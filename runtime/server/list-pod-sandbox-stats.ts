import type { CallContext } from '../../cri-api/server.js';
import type { ListPodSandboxStatsRequest__Output } from '../../cri-api/generated/runtime/v1/ListPodSandboxStatsRequest.js';
import type { ListPodSandboxStatsResponse } from '../../cri-api/generated/runtime/v1/ListPodSandboxStatsResponse.js';
import { matchesLabels } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamPodSandboxStatsRequest__Output } from '../../cri-api/generated/runtime/v1/StreamPodSandboxStatsRequest.js';
import type { StreamPodSandboxStatsResponse } from '../../cri-api/generated/runtime/v1/StreamPodSandboxStatsResponse.js';

/** Ready pods only. The id filter matches a prefix, as ListPodSandbox's does. */
export async function ListPodSandboxStats(rt: PodRuntime, req: ListPodSandboxStatsRequest__Output, _ctx: CallContext): Promise<ListPodSandboxStatsResponse> {
  const f = req.filter;
  const pods = rt
    .listSandboxes()
    .filter((s) => !f?.id || s.id.startsWith(f.id))
    .filter((s) => matchesLabels(s.labels, f?.label_selector));
  return { stats: await rt.stats.listPodSandboxStats(pods) };
}

/** ListPodSandboxStats' answer as a stream of batches. */
export async function StreamPodSandboxStats(rt: PodRuntime, req: StreamPodSandboxStatsRequest__Output, send: (m: StreamPodSandboxStatsResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { stats } = await ListPodSandboxStats(rt, { filter: req.filter }, ctx);
  await sendInBatches(stats ?? [], (pod_sandbox_stats) => ({ pod_sandbox_stats }), send);
}
