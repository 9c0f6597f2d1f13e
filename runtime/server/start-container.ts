import type { CallContext } from '../../cri-api/server.js';
import type { StartContainerRequest__Output } from '../../cri-api/generated/runtime/v1/StartContainerRequest.js';
import type { StartContainerResponse } from '../../cri-api/generated/runtime/v1/StartContainerResponse.js';
import { failedPrecondition, wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import { startRestoredLocked } from '../checkpoint/restore.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { containerIo } from '../logs/container-io.js';
import { nowNs } from '../records/store.js';
import { recordedRunscFlags } from '../runsc/gvisor-flags.js';

/**
 * Creates and starts a created container in its pod's sandbox (runsc hears
 * of it only now, as containerd makes its task here), then its exit waiter. A
 * container that fails to start is exited with StartError, as in containerd.
 * A container made from a checkpoint is restored instead (checkpoint/restore.ts).
 */
export async function StartContainer(rt: PodRuntime, req: StartContainerRequest__Output, _ctx: CallContext): Promise<StartContainerResponse> {
  const c = rt.requireContainer(requireId(req.container_id, 'container_id'));
  if (c.restore) {
    // Restoring replaces the pod's sandbox: pod lock first, as RemovePodSandbox takes them.
    await rt.locks.run(c.sandboxId, () => rt.locks.run(c.id, () => startRestoredLocked(rt, c)));
    return {};
  }
  await rt.locks.run(c.id, async () => {
    const ctx = `start container ${c.name} (${c.id.slice(0, 12)})`;
    if (c.phase !== 'created') throw failedPrecondition(`${ctx}: container is ${c.phase}, only a created container can start`);
    const pod = rt.sandboxes.get(c.sandboxId);
    if (pod?.phase !== 'ready') throw failedPrecondition(`${ctx}: its pod sandbox is not ready`);
    try {
      // After a restart between create and start the daemon's ends are gone: open them again.
      // (A terminal's ends stay with the reaper, which outlived the daemon.)
      const io = rt.io.get(c.id) ?? (await rt.io.open(c, c.terminal ? 'reattach' : 'create'));
      await rt.driver.startContainer({ id: c.id, bundleDir: rt.containerBundleDir(c.id), io: containerIo(io), runscFlags: recordedRunscFlags(pod.annotations) });
    } catch (err) {
      // As containerd: a container that failed to start is exited, with why.
      await rt.exits.record(c, 128, 'StartError', (err as Error).message);
      throw wrapError(err, ctx);
    }
    c.phase = 'running';
    c.startedAtNs = nowNs();
    await rt.containers.put(c);
    rt.exits.watch(c);
    rt.logger.info({ container: c.id, name: c.name }, 'container started');
    rt.emit('CONTAINER_STARTED_EVENT', c.id, c.sandboxId);
  });
  return {};
}
