import type { CallContext } from '../../cri-api/server.js';
import type { PodSandboxStatus } from '../../cri-api/generated/runtime/v1/PodSandboxStatus.js';
import type { PodSandboxStatusRequest__Output } from '../../cri-api/generated/runtime/v1/PodSandboxStatusRequest.js';
import type { PodSandboxStatusResponse } from '../../cri-api/generated/runtime/v1/PodSandboxStatusResponse.js';
import { notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import { containerStatus } from './container-status.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { nowNs, type SandboxRecord } from '../records/store.js';

export function sandboxState(s: SandboxRecord): 'SANDBOX_READY' | 'SANDBOX_NOTREADY' {
  return s.phase === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY';
}

export function sandboxStatus(s: SandboxRecord): PodSandboxStatus {
  // Host-network pods have no pod IP of their own: kubelet uses the node's.
  const ips = s.hostNetwork ? [] : s.ips;
  return {
    id: s.id,
    metadata: { name: s.name, uid: s.uid, namespace: s.namespace, attempt: s.attempt },
    state: sandboxState(s),
    created_at: s.createdAtNs,
    network: { ip: ips[0] ?? '', additional_ips: ips.slice(1).map((ip) => ({ ip })) },
    linux: { namespaces: { options: { network: s.namespaceModes.network as 'POD', pid: s.namespaceModes.pid as 'POD', ipc: s.namespaceModes.ipc as 'POD' } } },
    labels: s.labels,
    annotations: s.annotations,
    runtime_handler: s.runtimeHandler,
  };
}

/** Answered from memory; only `verbose` asks runsc. */
export async function PodSandboxStatus(rt: PodRuntime, req: PodSandboxStatusRequest__Output, _ctx: CallContext): Promise<PodSandboxStatusResponse> {
  const id = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  const s = rt.getSandbox(id);
  if (!s) throw notFound(`pod sandbox "${id}" not found`);
  const res: PodSandboxStatusResponse = {
    status: sandboxStatus(s),
    containers_statuses: rt.listContainers().filter((c) => c.sandboxId === s.id).map((c) => containerStatus(c, rt.imageNames(c))),
    timestamp: nowNs(),
  };
  if (req.verbose) {
    res.info = {
      info: JSON.stringify({
        pid: s.pid ?? 0,
        netnsPath: s.netnsPath ?? '',
        hostNetwork: s.hostNetwork,
        hostname: s.hostname,
        runtimeHandler: s.runtimeHandler,
        runscState: await rt.sandboxRuntimeState(s.id),
        traceSessions: await rt.sandboxTraceSessions(s.id),
        podResources: s.podResources ?? null,
      }),
    };
  }
  return res;
}
