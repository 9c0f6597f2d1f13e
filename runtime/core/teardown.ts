/**
 * Undoing what exists of a pod or container: what a failed RunPodSandbox
 * or CreateContainer leaves, what recovery finds half-made after a crash,
 * and the image holds RemoveContainer lets go of.
 */
import { rm } from 'node:fs/promises';
import { podLabel, type ContainerRecord, type SandboxRecord } from '../records/store.js';
import type { PodRuntime } from './pod-runtime.js';

/** Undoes whatever part of a sandbox exists: runsc state, cgroup, network, files, record. */
export async function rollbackSandbox(rt: PodRuntime, rec: SandboxRecord): Promise<void> {
  const log = rt.logger.child({ pod: podLabel(rec) });
  await rt.driver.removeSandbox(rec.id, []).catch((err: unknown) => log.error({ err }, 'rollback: removing the runsc sandbox failed'));
  await removeSandboxCgroup(rt, rec).catch((err: unknown) => log.error({ err }, 'rollback: removing the sandbox cgroup failed'));
  if (!rec.hostNetwork) await rt.opts.network.teardown(rec.id).catch((err: unknown) => log.error({ err }, 'rollback: tearing down the pod network failed'));
  await rm(rt.podDir(rec.id), { recursive: true, force: true });
  await rt.sandboxes.delete(rec.id);
}

/** Removes the sandbox's cgroup and the ancestors the daemon made for it (runsc leaves a cgroup it did not make). */
export async function removeSandboxCgroup(rt: PodRuntime, rec: SandboxRecord): Promise<void> {
  if (rec.cgroup) await rt.cgroups.remove(rec.cgroup.path, rec.cgroup.made);
}

/** Undoes a half-made container: runsc state, stdio, files, image hold, record (in that order). */
export async function rollbackContainer(rt: PodRuntime, rec: ContainerRecord): Promise<void> {
  await rt.driver.removeContainer(rec.id).catch((err: unknown) => rt.logger.error({ err, container: rec.id }, 'rollback: removing the runsc container failed'));
  await rt.io.close(rec.id, false);
  await rm(rt.containerDir(rec.id), { recursive: true, force: true });
  await rm(rt.restoreDir(rec.id), { recursive: true, force: true });
  await releaseImages(rt, rec.id).catch((err: unknown) => rt.logger.error({ err, container: rec.id }, 'rollback: releasing the image failed'));
  await rt.containers.delete(rec.id);
}

/** Lets go of the container's image and of its image volumes' images (held as "<id>/image-volume-<n>"). */
export async function releaseImages(rt: PodRuntime, id: string): Promise<void> {
  for (const holder of rt.opts.images.holderIds().filter((h) => h === id || h.startsWith(`${id}/`))) await rt.opts.images.release(holder);
}
