import type { CallContext } from '../../cri-api/server.js';
import type { PodSandboxStatsRequest__Output } from '../../cri-api/generated/runtime/v1/PodSandboxStatsRequest.js';
import type { PodSandboxStatsResponse } from '../../cri-api/generated/runtime/v1/PodSandboxStatsResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** A ready pod's usage with its running containers'; unknown and stopped pods are NOT_FOUND. */
export async function PodSandboxStats(rt: PodRuntime, req: PodSandboxStatsRequest__Output, _ctx: CallContext): Promise<PodSandboxStatsResponse> {
  const id = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  return { stats: await rt.stats.podSandboxStats(id) };
}
