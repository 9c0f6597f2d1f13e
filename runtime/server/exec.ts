import type { CallContext } from '../../cri-api/server.js';
import type { ExecRequest__Output } from '../../cri-api/generated/runtime/v1/ExecRequest.js';
import type { ExecResponse } from '../../cri-api/generated/runtime/v1/ExecResponse.js';
import { invalidArgument } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import type { StreamUrls } from '../streaming/stream-urls.js';

/** Checks the container now; the process starts when the client opens the returned URL. */
export async function Exec(rt: PodRuntime, streams: StreamUrls, req: ExecRequest__Output, _ctx: CallContext): Promise<ExecResponse> {
  const id = requireId(req.container_id, 'container_id');
  if (req.cmd.length === 0 || req.cmd[0] === '') throw invalidArgument('cmd must name a program to run');
  const c = rt.requireRunningContainer(id, 'exec');
  const url = streams.getExecUrl({ containerId: c.id, cmd: [...req.cmd], tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
  return { url };
}
