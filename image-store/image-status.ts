import type { ImageStatusRequest__Output } from '../cri-api/generated/runtime/v1/ImageStatusRequest.js';
import type { ImageStatusResponse } from '../cri-api/generated/runtime/v1/ImageStatusResponse.js';
import type { ImageStore } from './store.js';
import { requireImageRef, toCriImage } from './cri-image.js';

/** ImageStatus: an unknown image is no error, just a response without image. */
export async function ImageStatus(images: ImageStore, req: ImageStatusRequest__Output): Promise<ImageStatusResponse> {
  const record = images.resolve(requireImageRef(req.image, 'ImageStatus'));
  if (!record) return { image: null, info: {} };
  const info: Record<string, string> = {};
  if (req.verbose) {
    const imageSpec: unknown = JSON.parse(await images.configJson(record.id));
    info.info = JSON.stringify({ id: record.id, chainID: record.chainId, imageSpec });
  }
  return { image: toCriImage(record), info };
}
