import type { StatusRequest__Output } from '../../cri-api/generated/runtime/v1/StatusRequest.js';
import type { StatusResponse } from '../../cri-api/generated/runtime/v1/StatusResponse.js';
import type { RuntimeInfo, Condition } from './runtime-info.js';

const condition = (type: string, c: Condition) => ({ type, status: c.ready, reason: c.ready ? '' : c.reason, message: c.ready ? '' : c.message });

export async function Status(info: RuntimeInfo, req: StatusRequest__Output): Promise<StatusResponse> {
  const runtime = await info.runtimeCondition();
  const network = info.networkCondition();
  return {
    status: { conditions: [condition('RuntimeReady', runtime), condition('NetworkReady', network)] },
    info: req.verbose ? { config: JSON.stringify(await info.verboseInfo()) } : {},
    // Every handler is runsc. A read-only gVisor bind is read-only all the way
    // down (spec/path-mounts.ts submountsOf); runsc 0.0~20240729 cannot give a
    // pod a faithful user namespace (spec/user-namespace.ts).
    runtime_handlers: info.handlers.map((name) => ({ name, features: { recursive_read_only_mounts: true, user_namespaces: false } })),
    // Merge and Strict are honoured, and ContainerStatus reports user.linux.
    features: { supplemental_groups_policy: true, user_namespaces_host_network: false },
  };
}
