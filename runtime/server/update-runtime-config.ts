import type { UpdateRuntimeConfigRequest__Output } from '../../cri-api/generated/runtime/v1/UpdateRuntimeConfigRequest.js';
import type { UpdateRuntimeConfigResponse } from '../../cri-api/generated/runtime/v1/UpdateRuntimeConfigResponse.js';
import type { RuntimeInfo } from './runtime-info.js';

/** kubelet hands over the node's pod CIDR; the CNI config on the node owns addressing, so it is recorded and reported only. */
export async function UpdateRuntimeConfig(info: RuntimeInfo, req: UpdateRuntimeConfigRequest__Output): Promise<UpdateRuntimeConfigResponse> {
  const cidr = req.runtime_config?.network_config?.pod_cidr ?? '';
  if (cidr !== '') info.setPodCidr(cidr);
  return {};
}
