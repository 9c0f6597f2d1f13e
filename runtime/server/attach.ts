import type { CallContext } from '../../cri-api/server.js';
import type { AttachRequest__Output } from '../../cri-api/generated/runtime/v1/AttachRequest.js';
import type { AttachResponse } from '../../cri-api/generated/runtime/v1/AttachResponse.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import type { StreamUrls } from '../streaming/stream-urls.js';

/**
 * Attach reaches the container's own stdio: output as it is written (the
 * CRI log keeps being written too), input to its stdin if it was created
 * with stdin. Leaving detaches; the container keeps running.
 */
export async function Attach(rt: PodRuntime, streams: StreamUrls, req: AttachRequest__Output, _ctx: CallContext): Promise<AttachResponse> {
  const id = requireId(req.container_id, 'container_id');
  const c = rt.requireRunningContainer(id, 'attach');
  const url = streams.getAttachUrl({ containerId: c.id, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
  return { url };
}
