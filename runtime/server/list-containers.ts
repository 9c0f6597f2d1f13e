import type { CallContext } from '../../cri-api/server.js';
import type { ListContainersRequest__Output } from '../../cri-api/generated/runtime/v1/ListContainersRequest.js';
import type { ListContainersResponse } from '../../cri-api/generated/runtime/v1/ListContainersResponse.js';
import { containerState, selectContainers } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sendInBatches } from '../../cri-api/batches.js';
import type { StreamContainersRequest__Output } from '../../cri-api/generated/runtime/v1/StreamContainersRequest.js';
import type { StreamContainersResponse } from '../../cri-api/generated/runtime/v1/StreamContainersResponse.js';

/** Answered from memory. */
export async function ListContainers(rt: PodRuntime, req: ListContainersRequest__Output, _ctx: CallContext): Promise<ListContainersResponse> {
  const f = req.filter;
  const containers = selectContainers(rt.listContainers(), f)
    .filter((c) => !f?.state || containerState(c) === f.state.state)
    .map((c) => ({ c, names: rt.imageNames(c) }))
    .map(({ c, names }) => ({
      id: c.id,
      pod_sandbox_id: c.sandboxId,
      metadata: { name: c.name, attempt: c.attempt },
      image: { image: names.image },
      image_ref: names.imageRef,
      image_id: c.imageId,
      state: containerState(c),
      created_at: c.createdAtNs,
      labels: c.labels,
      annotations: c.annotations,
    }));
  return { containers };
}

/** ListContainers' answer as a stream of batches. */
export async function StreamContainers(rt: PodRuntime, req: StreamContainersRequest__Output, send: (m: StreamContainersResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const { containers } = await ListContainers(rt, { filter: req.filter }, ctx);
  await sendInBatches(containers ?? [], (batch) => ({ containers: batch }), send);
}
