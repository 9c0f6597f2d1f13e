import type { CallContext } from '../../cri-api/server.js';
import type { ContainerStatusRequest__Output } from '../../cri-api/generated/runtime/v1/ContainerStatusRequest.js';
import type { ContainerStatusResponse } from '../../cri-api/generated/runtime/v1/ContainerStatusResponse.js';
import { notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { containerStatus } from '../records/cri-view.js';

/** Answered from memory. */
export async function ContainerStatus(rt: PodRuntime, req: ContainerStatusRequest__Output, _ctx: CallContext): Promise<ContainerStatusResponse> {
  const id = requireId(req.container_id, 'container_id');
  const c = rt.getContainer(id);
  if (!c) throw notFound(`container "${id}" not found`);
  const res: ContainerStatusResponse = { status: containerStatus(c, rt.imageNames(c)) };
  if (req.verbose) {
    const pod = rt.sandboxes.get(c.sandboxId);
    res.info = {
      info: JSON.stringify({
        sandboxID: c.sandboxId,
        pid: pod?.pid ?? 0,
        tty: c.tty ? (c.terminal ? true : 'requested; running without a terminal (no runsc reaper)') : false,
        user: c.user,
        env: c.env.map((e) => e.split('=', 1)[0]),
        cwd: c.cwd,
        capabilities: c.capabilities,
        stopSignal: c.stopSignal,
        runDir: rt.containerDir(c.id),
      }),
    };
  }
  return res;
}
