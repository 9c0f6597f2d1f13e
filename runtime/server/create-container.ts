import type { CallContext } from '../../cri-api/server.js';
import type { CreateContainerRequest__Output } from '../../cri-api/generated/runtime/v1/CreateContainerRequest.js';
import type { CreateContainerResponse } from '../../cri-api/generated/runtime/v1/CreateContainerResponse.js';
import { requireId, requireMessage, requireName, requireString, requireStringMap } from '../../cri-api/validate.js';
import type { PodRuntime } from '../core/pod-runtime.js';

export async function CreateContainer(rt: PodRuntime, req: CreateContainerRequest__Output, _ctx: CallContext): Promise<CreateContainerResponse> {
  const podId = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  const config = requireMessage(req.config, 'config');
  const meta = requireMessage(config.metadata, 'config.metadata');
  requireName(meta.name, 'config.metadata.name');
  const image = requireMessage(config.image, 'config.image');
  requireString(image.image, 'config.image.image');
  requireStringMap(config.labels, 'config.labels');
  requireStringMap(config.annotations, 'config.annotations');
  const id = await rt.createContainer(podId, config);
  return { container_id: id };
}
