import type { CriHandlers } from '../cri-api/server.js';
import { Version } from '../runtime/version.js';
import { Status } from '../runtime/status.js';
import { RuntimeConfig } from '../runtime/runtime-config.js';
import { UpdateRuntimeConfig } from '../runtime/update-runtime-config.js';
import { ImageFsInfo, ImageStatus, ListImages, PullImage, RemoveImage } from '../image-store/index.js';
import type { Services } from './services.js';

/** Every implemented RPC, bound to the services it needs; the others answer UNIMPLEMENTED. */
export function buildHandlers(s: Services): CriHandlers {
  return {
    Version: (req) => Version(s.info, req),
    Status: (req) => Status(s.info, req),
    RuntimeConfig: (req) => RuntimeConfig(req),
    UpdateRuntimeConfig: (req) => UpdateRuntimeConfig(s.info, req),
    PullImage: (req, ctx) => PullImage(s.images, req, ctx.signal),
    ListImages: (req) => ListImages(s.images, req),
    ImageStatus: (req) => ImageStatus(s.images, req),
    RemoveImage: (req) => RemoveImage(s.images, req),
    ImageFsInfo: (req) => ImageFsInfo(s.images, req),
  };
}
