import type { RuntimeConfigRequest__Output } from '../../cri-api/generated/runtime/v1/RuntimeConfigRequest.js';
import type { RuntimeConfigResponse } from '../../cri-api/generated/runtime/v1/RuntimeConfigResponse.js';

/** We place sandboxes in cgroups by path (cgroupfs), never through systemd. */
export async function RuntimeConfig(_req: RuntimeConfigRequest__Output): Promise<RuntimeConfigResponse> {
  return { linux: { cgroup_driver: 'CGROUPFS' } };
}
