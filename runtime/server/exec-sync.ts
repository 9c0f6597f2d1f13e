import type { CallContext } from '../../cri-api/server.js';
import type { ExecSyncRequest__Output } from '../../cri-api/generated/runtime/v1/ExecSyncRequest.js';
import type { ExecSyncResponse } from '../../cri-api/generated/runtime/v1/ExecSyncResponse.js';
import { invalidArgument } from '../../cri-api/errors.js';
import { requireId, requireNonNegative } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** timeout 0 means none; a passed deadline is DEADLINE_EXCEEDED, which kubelet's probes expect. */
export async function ExecSync(rt: PodRuntime, req: ExecSyncRequest__Output, _ctx: CallContext): Promise<ExecSyncResponse> {
  const id = requireId(req.container_id, 'container_id');
  if (req.cmd.length === 0 || req.cmd[0] === '') throw invalidArgument('cmd must name a program to run');
  const timeout = requireNonNegative(req.timeout || '0', 'timeout');
  const r = await rt.execSync(id, [...req.cmd], timeout);
  return { stdout: r.stdout, stderr: r.stderr, exit_code: r.exitCode };
}
