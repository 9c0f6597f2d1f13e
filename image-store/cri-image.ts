import { invalidArgument } from '../cri-api/errors.js';
import type { Image } from '../cri-api/generated/runtime/v1/Image.js';
import type { ImageSpec__Output } from '../cri-api/generated/runtime/v1/ImageSpec.js';
import type { ImageRecord } from './store.js';

/** The image reference a request names, or INVALID_ARGUMENT naming the field. */
export function requireImageRef(spec: ImageSpec__Output | null | undefined, rpc: string): string {
  const ref = spec?.image ?? '';
  if (ref === '') throw invalidArgument(`${rpc}: image.image must be set`);
  return ref;
}

/** CRI's Image message: the default user is a uid when numeric, else a user name. */
export function toCriImage(record: ImageRecord): Image {
  const user = (record.config.User ?? '').split(':')[0];
  const numeric = /^\d+$/.test(user);
  return {
    id: record.id,
    repo_tags: record.repoTags,
    repo_digests: record.repoDigests,
    size: String(record.size),
    uid: numeric ? { value: user } : null,
    username: numeric ? '' : user,
    spec: { image: record.id, annotations: {} },
    pinned: record.pinned,
  };
}
