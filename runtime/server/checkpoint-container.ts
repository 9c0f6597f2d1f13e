import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { CallContext } from '../../cri-api/server.js';
import type { CheckpointContainerRequest__Output } from '../../cri-api/generated/runtime/v1/CheckpointContainerRequest.js';
import type { CheckpointContainerResponse } from '../../cri-api/generated/runtime/v1/CheckpointContainerResponse.js';
import { failedPrecondition, invalidArgument, wrapError } from '../../cri-api/errors.js';
import { requireAbsolutePath, requireId, requireNonNegative } from '../../cri-api/validate.js';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, IMAGE_DIR_NAME, writeCheckpointArchive, type CheckpointManifest } from '../checkpoint/archive.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { podLabel } from '../records/store.js';
import { readBundleSpec } from '../spec/oci-spec.js';

/** Used when the request's timeout is 0 ("the CRI default"). */
export const DEFAULT_CHECKPOINT_TIMEOUT_S = 300;

/**
 * Writes a checkpoint of the container's whole gVisor sandbox to `location`
 * as a tar archive (manifest + runsc image, checkpoint/archive.ts); the
 * container keeps running. The runsc image is written beside `location`
 * first, so it lands on that disk. Restore: CreateContainer in a new pod
 * with the archive's path as image (checkpoint/restore.ts).
 */
export async function CheckpointContainer(rt: PodRuntime, req: CheckpointContainerRequest__Output, _ctx: CallContext): Promise<CheckpointContainerResponse> {
  const id = requireId(req.container_id, 'container_id');
  const location = requireAbsolutePath(req.location, 'location');
  const timeoutMs = (requireNonNegative(req.timeout, 'timeout') || DEFAULT_CHECKPOINT_TIMEOUT_S) * 1000;
  const c = rt.requireContainer(id);
  const ctx = `checkpoint container ${c.name} (${c.id.slice(0, 12)}) to ${location}`;
  if (!(await stat(dirname(location)).catch(() => undefined))?.isDirectory()) throw invalidArgument(`${ctx}: directory ${dirname(location)} does not exist`);
  if ((await stat(location).catch(() => undefined))?.isDirectory()) throw invalidArgument(`${ctx}: location is a directory; name the archive file to write`);
  const features = rt.requireFeatures();
  await rt.locks.run(c.id, async () => {
    if (c.phase !== 'running') throw failedPrecondition(`${ctx}: container is ${c.phase}, not running`);
    const pod = rt.sandboxes.get(c.sandboxId);
    if (pod?.phase !== 'ready') throw failedPrecondition(`${ctx}: its pod sandbox is not ready`);
    const work = join(dirname(location), `.${basename(location)}.work-${randomBytes(4).toString('hex')}`);
    const started = Date.now();
    try {
      await mkdir(work, { mode: 0o700 });
      const spec = await readBundleSpec(rt.containerBundleDir(c.id));
      const members = await rt.driver.appContainersOf(pod.id);
      await rt.driver.checkpointSandbox(pod.id, join(work, IMAGE_DIR_NAME), timeoutMs);
      const manifest: Omit<CheckpointManifest, 'imageDigests'> = {
        format: CHECKPOINT_FORMAT,
        version: CHECKPOINT_VERSION,
        createdAt: new Date().toISOString(),
        runscVersion: features.version,
        pod: { id: pod.id, name: pod.name, namespace: pod.namespace, uid: pod.uid, hostNetwork: pod.hostNetwork, etcFiles: pod.etcFiles },
        container: {
          id: c.id, name: c.name, attempt: c.attempt, image: c.image, imageId: c.imageId, imageRef: rt.imageNames(c).imageRef,
          mounts: c.mounts, stdin: c.stdin, stdinOnce: c.stdinOnce, tty: c.tty, resources: c.resources, stopSignal: c.stopSignal,
          user: c.user, env: c.env, cwd: c.cwd, capabilities: c.capabilities, noNewPrivileges: c.noNewPrivileges,
          seccompFilter: c.seccompFilter,
        },
        spec,
        sandboxContainers: members.map((m) => ({ id: m, name: rt.containers.get(m)?.name ?? m })),
      };
      await writeCheckpointArchive(location, work, manifest);
    } catch (err) {
      throw wrapError(err, ctx);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    rt.logger.info({ container: c.id, name: c.name, pod: podLabel(pod), location, ms: Date.now() - started }, 'container checkpointed');
  });
  return {};
}
