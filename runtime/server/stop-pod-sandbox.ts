import type { CallContext } from '../../cri-api/server.js';
import type { StopPodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/StopPodSandboxRequest.js';
import type { StopPodSandboxResponse } from '../../cri-api/generated/runtime/v1/StopPodSandboxResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** Idempotent: an unknown or already stopped pod succeeds, as in containerd. */
export async function StopPodSandbox(rt: PodRuntime, req: StopPodSandboxRequest__Output, _ctx: CallContext): Promise<StopPodSandboxResponse> {
  await rt.stopPodSandbox(requireId(req.pod_sandbox_id, 'pod_sandbox_id'));
  return {};
}
