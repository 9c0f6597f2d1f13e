import type { CallContext } from '../../cri-api/server.js';
import type { ExecSyncRequest__Output } from '../../cri-api/generated/runtime/v1/ExecSyncRequest.js';
import type { ExecSyncResponse } from '../../cri-api/generated/runtime/v1/ExecSyncResponse.js';
import { CriError, deadlineExceeded, failedPrecondition, GrpcStatus, invalidArgument, wrapError } from '../../cri-api/errors.js';
import { requireId, requireNonNegative } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { recordedRunscFlags } from '../runsc/gvisor-flags.js';
import { isGone } from '../runsc/runsc.js';
import type { ExecSyncResult } from '../runsc/sandbox-driver.js';
import { filteredArgs } from '../seccomp/exec-helper.js';
import { buildExecProcess } from '../spec/oci-spec.js';

/**
 * Runs a command in a running container with its user, directory,
 * environment and capabilities (and its seccomp filter, through the exec
 * helper). timeout 0 means none; a passed deadline is DEADLINE_EXCEEDED,
 * which kubelet's probes read as "probe timed out". A call cancelled by its
 * client (or past its gRPC deadline) kills the process.
 */
export async function ExecSync(rt: PodRuntime, req: ExecSyncRequest__Output, call: CallContext): Promise<ExecSyncResponse> {
  const id = requireId(req.container_id, 'container_id');
  if (req.cmd.length === 0 || req.cmd[0] === '') throw invalidArgument('cmd must name a program to run');
  const timeoutSec = requireNonNegative(req.timeout || '0', 'timeout');
  const c = rt.requireContainer(id);
  const ctx = `exec in container ${c.name} (${c.id.slice(0, 12)})`;
  if (c.phase !== 'running') throw failedPrecondition(`${ctx}: container is ${c.phase}, not running`);
  const proc = buildExecProcess({ args: filteredArgs(c.seccompFilter, [...req.cmd]), env: c.env, cwd: c.cwd, user: c.user, terminal: false, capabilities: c.capabilities, noNewPrivileges: c.noNewPrivileges });
  let r: ExecSyncResult;
  try {
    r = await rt.driver.execSync(c.id, proc, timeoutSec * 1000, recordedRunscFlags(rt.sandboxes.get(c.sandboxId)?.annotations ?? {}), call.signal);
  } catch (err) {
    if (isGone(err)) throw failedPrecondition(`${ctx}: container is not running`);
    throw wrapError(err, ctx);
  }
  // The caller went away or its gRPC deadline passed: the process was killed, nobody reads an answer.
  if (r.cancelled) throw new CriError(GrpcStatus.CANCELLED, `${ctx}: the call was cancelled; the process was killed`);
  if (r.timedOut) throw deadlineExceeded(`${ctx}: timeout ${timeoutSec}s exceeded`);
  return { stdout: r.stdout, stderr: r.stderr, exit_code: r.exitCode };
}
