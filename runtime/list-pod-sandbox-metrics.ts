import type { CallContext } from '../cri-api/server.js';
import type { ListPodSandboxMetricsRequest__Output } from '../cri-api/generated/runtime/v1/ListPodSandboxMetricsRequest.js';
import type { ListPodSandboxMetricsResponse } from '../cri-api/generated/runtime/v1/ListPodSandboxMetricsResponse.js';
import { listPodSandboxMetrics } from './cri-metrics.js';
import type { PodRuntime } from './runtime.js';

/** Metrics of every ready pod and its running containers, from the stats samples (kubelet's /metrics/cadvisor scrape). */
export async function ListPodSandboxMetrics(rt: PodRuntime, _req: ListPodSandboxMetricsRequest__Output, _ctx: CallContext): Promise<ListPodSandboxMetricsResponse> {
  return { pod_metrics: await listPodSandboxMetrics(rt.stats, rt) };
}
