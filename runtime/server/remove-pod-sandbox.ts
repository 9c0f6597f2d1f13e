import { rm } from 'node:fs/promises';
import type { CallContext } from '../../cri-api/server.js';
import type { RemovePodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/RemovePodSandboxRequest.js';
import type { RemovePodSandboxResponse } from '../../cri-api/generated/runtime/v1/RemovePodSandboxResponse.js';
import { wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { removeSandboxCgroup } from '../core/teardown.js';
import { podLabel } from '../records/store.js';
import { removeContainerLocked } from './remove-container.js';
import { stopPodLocked } from './stop-pod-sandbox.js';

/** Idempotent: an unknown pod succeeds; a running one is stopped first, then its containers and its sandbox are removed. */
export async function RemovePodSandbox(rt: PodRuntime, req: RemovePodSandboxRequest__Output, _ctx: CallContext): Promise<RemovePodSandboxResponse> {
  const rec = rt.getSandbox(requireId(req.pod_sandbox_id, 'pod_sandbox_id'));
  if (!rec) return {};
  await rt.locks.run(rec.id, async () => {
    if (!rt.sandboxes.get(rec.id)) return;
    await stopPodLocked(rt, rec);
    for (const c of rt.containers.list().filter((x) => x.sandboxId === rec.id)) {
      await rt.locks.run(c.id, () => removeContainerLocked(rt, c));
    }
    try {
      await rt.driver.removeSandbox(rec.id, []);
    } catch (err) {
      throw wrapError(err, `remove pod sandbox ${podLabel(rec)}`);
    }
    try {
      await removeSandboxCgroup(rt, rec);
    } catch (err) {
      throw wrapError(err, `remove pod sandbox ${podLabel(rec)}: removing its cgroup`);
    }
    await rm(rt.podDir(rec.id), { recursive: true, force: true });
    await rt.sandboxes.delete(rec.id);
    rt.logger.info({ pod: podLabel(rec) }, 'pod sandbox removed');
    rt.emit('CONTAINER_DELETED_EVENT', rec.id, rec);
  });
  return {};
}
