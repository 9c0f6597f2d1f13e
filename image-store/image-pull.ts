import type { PullImageRequest__Output } from '../cri-api/generated/runtime/v1/PullImageRequest.js';
import type { PullImageResponse } from '../cri-api/generated/runtime/v1/PullImageResponse.js';
import type { AuthCredentials } from './registry-client.js';
import type { ImageStore } from './store.js';
import { requireImageRef } from './cri-image.js';

/** PullImage: sandbox_config is ignored (every pod's images land in the one store). */
export async function PullImage(images: ImageStore, req: PullImageRequest__Output, signal?: AbortSignal): Promise<PullImageResponse> {
  const ref = requireImageRef(req.image, 'PullImage');
  const a = req.auth;
  // Empty strings are proto3's "unset".
  const auth: AuthCredentials | undefined = a
    ? {
        username: a.username || undefined,
        password: a.password || undefined,
        auth: a.auth || undefined,
        identityToken: a.identity_token || undefined,
        registryToken: a.registry_token || undefined,
      }
    : undefined;
  const image = await images.pull(ref, auth, signal);
  return { image_ref: image.id };
}
