import type { CallContext } from '../../cri-api/server.js';
import type { StopPodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/StopPodSandboxRequest.js';
import type { StopPodSandboxResponse } from '../../cri-api/generated/runtime/v1/StopPodSandboxResponse.js';
import { wrapError } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import { KILLED_EXIT_CODE } from '../core/exit-monitor.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { podLabel, type SandboxRecord } from '../records/store.js';
import { sideBySide } from '../../common/index.js';

/** Idempotent: an unknown or already stopped pod succeeds, as in containerd. */
export async function StopPodSandbox(rt: PodRuntime, req: StopPodSandboxRequest__Output, ctx: CallContext): Promise<StopPodSandboxResponse> {
  const rec = rt.getSandbox(requireId(req.pod_sandbox_id, 'pod_sandbox_id'));
  if (rec) await rt.locks.run(rec.id, () => stopPodLocked(rt, rec, ctx.signal));
  return {};
}

/**
 * Kills the sandbox with every container in it, settles their exits, tears
 * down the pod network and marks the pod NOTREADY. The caller holds the
 * pod's lock (RemovePodSandbox stops a pod this way too). A call that ends
 * stops between steps; what is done stays done and a retry finishes it.
 */
export async function stopPodLocked(rt: PodRuntime, rec: SandboxRecord, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const ctrs = rt.containers.list().filter((c) => c.sandboxId === rec.id);
  // The sandbox's kill and state removal, and the network's CNI DEL, need
  // nothing of each other: side by side, the slower one sets the pace. Both
  // are tried even when one fails, and a retry finishes either.
  await sideBySide([
    rt.exits
      .duringPodStop(rec.id, async () => {
        // One SIGKILL of the sandbox ends every container in it (containerd stops them forcibly too).
        await rt.driver.stopSandbox(rec.id, ctrs.map((c) => c.id), rec.pid);
        for (const c of ctrs) await rt.exits.settle(c, KILLED_EXIT_CODE);
      })
      .catch((err: unknown) => {
        throw wrapError(err, `stop pod sandbox ${podLabel(rec)}`);
      }),
    rec.hostNetwork
      ? undefined
      : rt.opts.network.teardown(rec.id).catch((err: unknown) => {
          throw wrapError(err, `stop pod sandbox ${podLabel(rec)}: tear down network`);
        }),
  ]);
  signal?.throwIfAborted();
  if (rec.phase !== 'notready') {
    rec.phase = 'notready';
    await rt.sandboxes.put(rec);
    rt.logger.info({ pod: podLabel(rec) }, 'pod sandbox stopped');
    rt.emit('CONTAINER_STOPPED_EVENT', rec.id, rec);
  }
}
