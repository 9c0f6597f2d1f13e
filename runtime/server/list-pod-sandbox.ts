import type { CallContext } from '../../cri-api/server.js';
import type { ListPodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/ListPodSandboxRequest.js';
import type { ListPodSandboxResponse } from '../../cri-api/generated/runtime/v1/ListPodSandboxResponse.js';
import { sandboxState, selectSandboxes } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamPodSandboxesRequest__Output } from '../../cri-api/generated/runtime/v1/StreamPodSandboxesRequest.js';
import type { StreamPodSandboxesResponse } from '../../cri-api/generated/runtime/v1/StreamPodSandboxesResponse.js';

/** Answered from memory. */
export async function ListPodSandbox(rt: PodRuntime, req: ListPodSandboxRequest__Output, _ctx: CallContext): Promise<ListPodSandboxResponse> {
  const f = req.filter;
  const items = selectSandboxes(rt.listSandboxes(), f)
    .filter((s) => !f?.state || sandboxState(s) === f.state.state)
    .map((s) => ({
      id: s.id,
      metadata: { name: s.name, uid: s.uid, namespace: s.namespace, attempt: s.attempt },
      state: sandboxState(s),
      created_at: s.createdAtNs,
      labels: s.labels,
      annotations: s.annotations,
      runtime_handler: s.runtimeHandler,
    }));
  return { items };
}

/** ListPodSandbox's answer as a stream of batches. */
export async function StreamPodSandboxes(rt: PodRuntime, req: StreamPodSandboxesRequest__Output, send: (m: StreamPodSandboxesResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { items } = await ListPodSandbox(rt, { filter: req.filter }, ctx);
  await sendInBatches(items ?? [], (pod_sandboxes) => ({ pod_sandboxes }), send);
}
