import type { CallContext } from '../../cri-api/server.js';
import type { ListPodSandboxMetricsRequest__Output } from '../../cri-api/generated/runtime/v1/ListPodSandboxMetricsRequest.js';
import type { ListPodSandboxMetricsResponse } from '../../cri-api/generated/runtime/v1/ListPodSandboxMetricsResponse.js';
import { listPodSandboxMetrics } from '../stats/cri-metrics.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamPodSandboxMetricsRequest__Output } from '../../cri-api/generated/runtime/v1/StreamPodSandboxMetricsRequest.js';
import type { StreamPodSandboxMetricsResponse } from '../../cri-api/generated/runtime/v1/StreamPodSandboxMetricsResponse.js';

/** Metrics of every ready pod and its running containers, from the stats samples (kubelet's /metrics/cadvisor scrape). */
export async function ListPodSandboxMetrics(rt: PodRuntime, _req: ListPodSandboxMetricsRequest__Output, _ctx: CallContext): Promise<ListPodSandboxMetricsResponse> {
  return { pod_metrics: await listPodSandboxMetrics(rt.stats, rt) };
}

/** ListPodSandboxMetrics' answer as a stream of batches. */
export async function StreamPodSandboxMetrics(rt: PodRuntime, _req: StreamPodSandboxMetricsRequest__Output, send: (m: StreamPodSandboxMetricsResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { pod_metrics } = await ListPodSandboxMetrics(rt, {}, ctx);
  await sendInBatches(pod_metrics ?? [], (pod_sandbox_metrics) => ({ pod_sandbox_metrics }), send);
}
