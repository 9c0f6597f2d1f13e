import type { ListImagesRequest__Output } from '../cri-api/generated/runtime/v1/ListImagesRequest.js';
import type { ListImagesResponse } from '../cri-api/generated/runtime/v1/ListImagesResponse.js';
import type { ImageStore } from './store.js';
import { toCriImage } from './cri-image.js';
import { sendInBatches } from '../cri-api/batches.js';
import type { StreamImagesRequest__Output } from '../cri-api/generated/runtime/v1/StreamImagesRequest.js';
import type { StreamImagesResponse } from '../cri-api/generated/runtime/v1/StreamImagesResponse.js';

export async function ListImages(images: ImageStore, req: ListImagesRequest__Output): Promise<ListImagesResponse> {
  const filter = req.filter?.image?.image || undefined;
  return { images: images.list(filter).map(toCriImage) };
}

/** ListImages' answer as a stream of batches. */
export async function StreamImages(images: ImageStore, req: StreamImagesRequest__Output, send: (m: StreamImagesResponse) => Promise<void>): Promise<void> {
  const { images: list } = await ListImages(images, { filter: req.filter });
  await sendInBatches(list ?? [], (batch) => ({ images: batch }), send);
}
