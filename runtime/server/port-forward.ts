import type { CallContext } from '../../cri-api/server.js';
import type { PortForwardRequest__Output } from '../../cri-api/generated/runtime/v1/PortForwardRequest.js';
import type { PortForwardResponse } from '../../cri-api/generated/runtime/v1/PortForwardResponse.js';
import { failedPrecondition, notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { StreamUrls } from './exec.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/**
 * The pod must be ready. Host-network pods are served too: their ports are
 * the node's, so the backend dials 127.0.0.1:port on the host for them
 * (what runsc --network=host would reach as well).
 */
export async function PortForward(rt: PodRuntime, streams: StreamUrls, req: PortForwardRequest__Output, _ctx: CallContext): Promise<PortForwardResponse> {
  const id = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  const pod = rt.getSandbox(id);
  if (!pod) throw notFound(`port forward: pod sandbox "${id}" not found`);
  if (pod.phase !== 'ready') throw failedPrecondition(`port forward to pod ${pod.namespace}/${pod.name} (${pod.id.slice(0, 12)}): pod sandbox is not ready`);
  const url = streams.getPortForwardUrl({ podSandboxId: pod.id, ports: [...req.port] });
  return { url };
}
