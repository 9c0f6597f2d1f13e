import type { CallContext } from '../../cri-api/server.js';
import type { RemovePodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/RemovePodSandboxRequest.js';
import type { RemovePodSandboxResponse } from '../../cri-api/generated/runtime/v1/RemovePodSandboxResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** Idempotent: an unknown pod succeeds; a running one is stopped first. */
export async function RemovePodSandbox(rt: PodRuntime, req: RemovePodSandboxRequest__Output, _ctx: CallContext): Promise<RemovePodSandboxResponse> {
  await rt.removePodSandbox(requireId(req.pod_sandbox_id, 'pod_sandbox_id'));
  return {};
}
