import type { ImageFsInfoRequest__Output } from '../cri-api/generated/runtime/v1/ImageFsInfoRequest.js';
import type { ImageFsInfoResponse } from '../cri-api/generated/runtime/v1/ImageFsInfoResponse.js';
import type { ImageStore } from './store.js';

/** ImageFsInfo: container writes live inside gVisor, so there is no separate container file system. */
export async function ImageFsInfo(images: ImageStore, _req: ImageFsInfoRequest__Output): Promise<ImageFsInfoResponse> {
  const fs = await images.fsInfo();
  return {
    image_filesystems: [
      {
        timestamp: String(fs.timestampNs),
        fs_id: { mountpoint: fs.mountpoint },
        used_bytes: { value: String(fs.usedBytes) },
        inodes_used: { value: String(fs.inodesUsed) },
      },
    ],
    container_filesystems: [],
  };
}
