import type { CallContext } from '../../cri-api/server.js';
import type { ExecRequest__Output } from '../../cri-api/generated/runtime/v1/ExecRequest.js';
import type { ExecResponse } from '../../cri-api/generated/runtime/v1/ExecResponse.js';
import { failedPrecondition, invalidArgument, notFound } from '../../cri-api/errors.js';
import { requireId } from '../../cri-api/validate.js';
import type { StreamServer } from '../../stream/index.js';
import type { ContainerRecord } from '../records/store.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** What the streaming RPCs need of the streaming server: a URL per request. */
export type StreamUrls = Pick<StreamServer, 'getExecUrl' | 'getAttachUrl' | 'getPortForwardUrl'>;

/** The container an exec or attach may reach: it exists and runs. */
export function runningContainer(rt: PodRuntime, id: string, what: string): ContainerRecord {
  const c = rt.getContainer(id);
  if (!c) throw notFound(`${what}: container "${id}" not found`);
  if (c.phase !== 'running') throw failedPrecondition(`${what} in container ${c.name} (${c.id.slice(0, 12)}): container is ${c.phase}, not running`);
  return c;
}

/** Checks the container now; the process starts when the client opens the returned URL. */
export async function Exec(rt: PodRuntime, streams: StreamUrls, req: ExecRequest__Output, _ctx: CallContext): Promise<ExecResponse> {
  const id = requireId(req.container_id, 'container_id');
  if (req.cmd.length === 0 || req.cmd[0] === '') throw invalidArgument('cmd must name a program to run');
  const c = runningContainer(rt, id, 'exec');
  const url = streams.getExecUrl({ containerId: c.id, cmd: [...req.cmd], tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
  return { url };
}
