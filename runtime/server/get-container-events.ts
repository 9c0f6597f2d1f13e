import type { CallContext } from '../../cri-api/server.js';
import type { ContainerEventResponse } from '../../cri-api/generated/runtime/v1/ContainerEventResponse.js';
import type { GetEventsRequest__Output } from '../../cri-api/generated/runtime/v1/GetEventsRequest.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/**
 * Streams every container and pod event from subscription on, until the
 * caller goes away, the daemon stops, or the caller falls too far behind
 * (RESOURCE_EXHAUSTED: kubelet then relists and subscribes again).
 */
export async function GetContainerEvents(rt: PodRuntime, _req: GetEventsRequest__Output, send: (ev: ContainerEventResponse) => Promise<void>, ctx: CallContext): Promise<void> {
  const sub = rt.events.subscribe();
  // A caller that stopped reading leaves send() waiting for a drain that never comes.
  const aborted = new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  ctx.logger.debug('container event subscriber joined');
  try {
    for (;;) {
      if (ctx.signal.aborted) return;
      const ev = await sub.next(ctx.signal);
      if (!ev) return;
      await Promise.race([send(ev), sub.ended, aborted]);
    }
  } finally {
    sub.close();
    ctx.logger.debug('container event subscriber left');
  }
}
