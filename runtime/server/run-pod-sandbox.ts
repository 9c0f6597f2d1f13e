import type { CallContext } from '../../cri-api/server.js';
import type { RunPodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/RunPodSandboxRequest.js';
import type { RunPodSandboxResponse } from '../../cri-api/generated/runtime/v1/RunPodSandboxResponse.js';
import { notFound } from '../../cri-api/errors.js';
import { requireMessage, requireString, requireStringMap } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** Runtime handlers this runtime answers to: the default and RuntimeClass "runsc". */
export const POD_RUNTIME_HANDLERS: readonly string[] = ['', 'runsc'];

export async function RunPodSandbox(rt: PodRuntime, req: RunPodSandboxRequest__Output, _ctx: CallContext): Promise<RunPodSandboxResponse> {
  const config = requireMessage(req.config, 'config');
  const meta = requireMessage(config.metadata, 'config.metadata');
  requireString(meta.name, 'config.metadata.name');
  requireString(meta.uid, 'config.metadata.uid');
  requireString(meta.namespace, 'config.metadata.namespace');
  requireStringMap(config.labels, 'config.labels');
  requireStringMap(config.annotations, 'config.annotations');
  if (!POD_RUNTIME_HANDLERS.includes(req.runtime_handler)) {
    throw notFound(`runtime handler "${req.runtime_handler}" not found; this runtime serves ${POD_RUNTIME_HANDLERS.map((h) => `"${h}"`).join(' and ')}`);
  }
  const id = await rt.runPodSandbox(config, req.runtime_handler);
  return { pod_sandbox_id: id };
}
