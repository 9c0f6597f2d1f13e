import type { RemoveImageRequest__Output } from '../cri-api/generated/runtime/v1/RemoveImageRequest.js';
import type { RemoveImageResponse } from '../cri-api/generated/runtime/v1/RemoveImageResponse.js';
import type { ImageStore } from './store.js';
import { requireImageRef } from './cri-image.js';

/** RemoveImage: removing an unknown image succeeds (kubelet retries removals). */
export async function RemoveImage(images: ImageStore, req: RemoveImageRequest__Output): Promise<RemoveImageResponse> {
  await images.remove(requireImageRef(req.image, 'RemoveImage'));
  return {};
}
