import type { RuntimeConfigRequest__Output } from '../../cri-api/generated/runtime/v1/RuntimeConfigRequest.js';
import type { RuntimeConfigResponse } from '../../cri-api/generated/runtime/v1/RuntimeConfigResponse.js';
import type { PodRuntime } from '../core/pod-runtime.js';

/** The configured cgroup driver: kubelet >= 1.28 (KubeletCgroupDriverFromCRI) takes its own from here. */
export async function RuntimeConfig(rt: PodRuntime, _req: RuntimeConfigRequest__Output): Promise<RuntimeConfigResponse> {
  return { linux: { cgroup_driver: rt.cgroups.driver === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' } };
}
