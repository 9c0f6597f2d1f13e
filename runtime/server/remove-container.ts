import { rm } from 'node:fs/promises';
import type { CallContext } from '../../cri-api/server.js';
import type { RemoveContainerRequest__Output } from '../../cri-api/generated/runtime/v1/RemoveContainerRequest.js';
import type { RemoveContainerResponse } from '../../cri-api/generated/runtime/v1/RemoveContainerResponse.js';
import { wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { releaseImages } from '../core/teardown.js';
import { podLabel, type ContainerRecord } from '../records/store.js';
import { stopContainerLocked } from './stop-container.js';
import { applyPodLimits } from './update-pod-sandbox-resources.js';

/** Idempotent: an unknown container succeeds; a running one is killed first. */
export async function RemoveContainer(rt: PodRuntime, req: RemoveContainerRequest__Output, _ctx: CallContext): Promise<RemoveContainerResponse> {
  const c = rt.getContainer(requireId(req.container_id, 'container_id'));
  if (c) await rt.locks.run(c.id, () => removeContainerLocked(rt, c));
  return {};
}

/** Kills (if running) and removes the container: runsc state, stdio, files, image holds, record. The caller holds its lock. */
export async function removeContainerLocked(rt: PodRuntime, c: ContainerRecord): Promise<void> {
  if (!rt.containers.get(c.id)) return;
  await stopContainerLocked(rt, c, 0);
  try {
    await rt.driver.removeContainer(c.id);
  } catch (err) {
    throw wrapError(err, `remove container ${c.name} (${c.id.slice(0, 12)})`);
  }
  rt.exits.forget(c.id);
  await rt.io.close(c.id, false);
  await rm(rt.containerDir(c.id), { recursive: true, force: true });
  await rm(rt.restoreDir(c.id), { recursive: true, force: true });
  // Released before the record goes: a crash in between leaves a record whose removal repeats the release.
  await releaseImages(rt, c.id);
  await rt.containers.delete(c.id);
  const pod = rt.sandboxes.get(c.sandboxId);
  // The sandbox cgroup shrinks by its limits; a failure leaves a looser limit, not a broken pod.
  if (pod) await applyPodLimits(rt, pod).catch((err: unknown) => rt.logger.warn({ err, pod: podLabel(pod) }, 'lowering the sandbox cgroup limits after a container removal failed'));
  rt.logger.info({ container: c.id, name: c.name }, 'container removed');
  rt.emit('CONTAINER_DELETED_EVENT', c.id, c.sandboxId);
}
