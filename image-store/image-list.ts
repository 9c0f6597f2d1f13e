import type { ListImagesRequest__Output } from '../cri-api/generated/runtime/v1/ListImagesRequest.js';
import type { ListImagesResponse } from '../cri-api/generated/runtime/v1/ListImagesResponse.js';
import type { ImageStore } from './store.js';
import { toCriImage } from './cri-image.js';

export async function ListImages(images: ImageStore, req: ListImagesRequest__Output): Promise<ListImagesResponse> {
  const filter = req.filter?.image?.image || undefined;
  return { images: images.list(filter).map(toCriImage) };
}
