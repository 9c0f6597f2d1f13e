import type { CallContext } from '../../cri-api/server.js';
import type { PodSandboxStatusRequest__Output } from '../../cri-api/generated/runtime/v1/PodSandboxStatusRequest.js';
import type { PodSandboxStatusResponse } from '../../cri-api/generated/runtime/v1/PodSandboxStatusResponse.js';
import { notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import { containerStatus, sandboxStatus } from '../records/cri-view.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { nowNs } from '../records/store.js';
import { parseTraceList } from '../runsc/trace-session.js';

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
        runscState: await rt.opts.runsc.state(s.id).catch((err: unknown) => ({ error: (err as Error).message })),
        traceSessions: await rt.opts.runsc.traceList(s.id).then(parseTraceList, (err: unknown) => ({ error: (err as Error).message })),
        podResources: s.podResources ?? null,
      }),
    };
  }
  return res;
}
