import type { CallContext } from '../../cri-api/server.js';
import type { PortForwardRequest__Output } from '../../cri-api/generated/runtime/v1/PortForwardRequest.js';
import type { PortForwardResponse } from '../../cri-api/generated/runtime/v1/PortForwardResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import type { StreamUrls } from '../streaming/stream-urls.js';

/**
 * The pod must be ready. Host-network pods are served too: their ports are
 * the node's, so the backend dials 127.0.0.1:port on the host for them
 * (what runsc --network=host would reach as well).
 */
export async function PortForward(rt: PodRuntime, streams: StreamUrls, req: PortForwardRequest__Output, _ctx: CallContext): Promise<PortForwardResponse> {
  const id = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  const pod = rt.requireReadyPod(id, 'port forward');
  const url = streams.getPortForwardUrl({ podSandboxId: pod.id, ports: [...req.port] });
  return { url };
}
