import type { CallContext } from '../../cri-api/server.js';
import type { StopContainerRequest__Output } from '../../cri-api/generated/runtime/v1/StopContainerRequest.js';
import type { StopContainerResponse } from '../../cri-api/generated/runtime/v1/StopContainerResponse.js';
import { wrapError } from '../../cri-api/errors.js';
import { requireId, requireNonNegative } from '../../cri-api/validate.js';
import { KILLED_EXIT_CODE } from '../core/exit-monitor.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import type { ContainerRecord } from '../records/store.js';

/**
 * The stop signal (CRI's, else the image's, else SIGTERM), then SIGKILL
 * after `timeout` seconds. Exited and unknown containers succeed, as CRI
 * (and critest's idempotence suite) want.
 */
export async function StopContainer(rt: PodRuntime, req: StopContainerRequest__Output, ctx: CallContext): Promise<StopContainerResponse> {
  const id = requireId(req.container_id, 'container_id');
  const timeout = requireNonNegative(req.timeout || '0', 'timeout');
  const c = rt.getContainer(id);
  if (c) await rt.locks.run(c.id, () => stopContainerLocked(rt, c, timeout, ctx.signal));
  return {};
}

/**
 * Stops a running container and settles its exit; the caller holds its lock
 * (RemoveContainer stops this way too). A call that ends (deadline, client
 * gone) stops waiting out the grace period with DEADLINE_EXCEEDED or CANCELLED.
 */
export async function stopContainerLocked(rt: PodRuntime, c: ContainerRecord, timeoutSec: number, signal?: AbortSignal): Promise<void> {
  if (c.phase !== 'running') return;
  try {
    signal?.throwIfAborted();
    // The container's exit waiter learns the exit: no second wait is made for it.
    await rt.driver.stopContainer(c.id, timeoutSec, c.stopSignal, signal, (ms, s) => rt.exits.waitExit(c.id, ms, s));
  } catch (err) {
    throw wrapError(err, `stop container ${c.name} (${c.id.slice(0, 12)})`);
  }
  await rt.exits.settle(c, KILLED_EXIT_CODE);
}
