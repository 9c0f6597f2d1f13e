export { ImageStore, type ImageStoreOptions, type ImageRecord } from './store.js';
export type { AuthCredentials } from './registry-client.js';
export type { OciImageConfig, Platform } from './manifest.js';
export { normalizeReference, parseReference, type ImageReference } from './reference.js';
export { PullImage } from './image-pull.js';
export { ListImages, StreamImages } from './image-list.js';
export { ImageStatus } from './image-status.js';
export { RemoveImage } from './image-remove.js';
export { ImageFsInfo } from './image-fs-info.js';
