export { ImageStore, type ImageStoreOptions, type ImageRecord } from './store.js';
export type { AuthCredentials } from './registry-client.js';
export type { OciImageConfig, Platform } from './manifest.js';
export { normalizeReference, parseReference, type ImageReference } from './reference.js';
