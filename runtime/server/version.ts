import type { VersionRequest__Output } from '../../cri-api/generated/runtime/v1/VersionRequest.js';
import type { VersionResponse } from '../../cri-api/generated/runtime/v1/VersionResponse.js';
import type { RuntimeInfo } from './runtime-info.js';

/** The CRI API version kubelet negotiates against; "0.1.0" is what every runtime answers for v1. */
const KUBELET_API_VERSION = '0.1.0';

export async function Version(info: RuntimeInfo, _req: VersionRequest__Output): Promise<VersionResponse> {
  return {
    version: KUBELET_API_VERSION,
    runtime_name: 'gvisor-cri',
    runtime_version: info.version,
    runtime_api_version: 'v1',
  };
}
