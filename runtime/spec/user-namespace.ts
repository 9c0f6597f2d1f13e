/**
 * User namespaces (KEP-127) are not offered: runsc 0.0~20240729 takes a
 * spec's linux.uidMappings/gidMappings only for its gofer on the host, while
 * inside the sandbox every process sees the identity map (/proc/self/uid_map
 * is "0 0 4294967295") and the image's files, owned by host root, show as
 * nobody (README, "Where gVisor differs from Linux for kubelet's settings").
 * So the handlers do not advertise user_namespaces, and a request for one is
 * refused rather than run without.
 */
import type { UserNamespace__Output } from '../../cri-api/generated/runtime/v1/UserNamespace.js';
import { invalidArgument } from '../../cri-api/errors.js';

/** Throws INVALID_ARGUMENT naming `field` unless the request means "no user namespace of the pod's own". */
export function refuseUserNamespace(userns: UserNamespace__Output | null | undefined, field: string): void {
  if (!userns) return;
  if (userns.mode === 'CONTAINER' || userns.mode === 'TARGET') {
    throw invalidArgument(`${field}.mode ${userns.mode}: a user namespace is per pod (POD) or the node's (NODE)`);
  }
  // POD without mappings is what older kubelets mean by "not set": no namespace of its own.
  if (userns.mode === 'POD' && (userns.uids.length > 0 || userns.gids.length > 0)) {
    throw invalidArgument(`${field}: user namespaces (hostUsers: false) are not supported by gVisor's runsc 0.0~20240729, which maps ids only for its gofer and shows the sandbox the identity map; run the pod with hostUsers: true`);
  }
}
