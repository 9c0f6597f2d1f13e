import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallContext } from '../../cri-api/server.js';
import type { ContainerConfig__Output } from '../../cri-api/generated/runtime/v1/ContainerConfig.js';
import type { CreateContainerRequest__Output } from '../../cri-api/generated/runtime/v1/CreateContainerRequest.js';
import type { CreateContainerResponse } from '../../cri-api/generated/runtime/v1/CreateContainerResponse.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, wrapError } from '../../cri-api/errors.js';
import { optionalRelativePath, requireId, requireMessage, requireName, requireString, requireStringMap } from '../../cri-api/validate.js';
import { createRestoredLocked } from '../checkpoint/restore.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sideBySide } from '../../common/index.js';
import { rollbackContainer } from '../core/teardown.js';
import { containerIo } from '../logs/container-io.js';
import { newContainerFields, newRecordId, podLabel, type ContainerRecord } from '../records/store.js';
import { recordedRunscFlags } from '../runsc/gvisor-flags.js';
import { isCheckpointArchiveRef } from '../checkpoint/archive.js';
import { bpfHex, compileSeccomp } from '../seccomp/bpf.js';
import { loadedAppArmorProfiles } from '../spec/apparmor.js';
import { resolveCapabilities } from '../spec/capabilities.js';
import { applyPodLimits } from './update-pod-sandbox-resources.js';
import { appArmorProfileName, imageVolumeRequests, mapContainerConfig, mountRecords, seccompChoice, specResources } from '../spec/container-config.js';
import { buildContainerSpec, type OciSeccomp } from '../spec/oci-spec.js';
import { pathMounts, resolveInImage, submountsOf } from '../spec/path-mounts.js';

/**
 * Validates, resolves the image (or, for a checkpoint archive, hands over
 * to checkpoint/restore.ts), maps the CRI config onto the image's, writes
 * the record, then holds the image, opens the container's stdio, builds its
 * OCI spec and writes its bundle (runsc creates it at StartContainer, as
 * containerd makes the task there); any failure undoes what
 * exists, and so does the end of the call (deadline passed, client gone),
 * checked between steps.
 */
export async function CreateContainer(rt: PodRuntime, req: CreateContainerRequest__Output, call: CallContext): Promise<CreateContainerResponse> {
  const podId = requireId(req.pod_sandbox_id, 'pod_sandbox_id');
  const config = requireMessage(req.config, 'config');
  const meta = requireMessage(config.metadata, 'config.metadata');
  requireName(meta.name, 'config.metadata.name');
  const image = requireMessage(config.image, 'config.image');
  requireString(image.image, 'config.image.image');
  requireStringMap(config.labels, 'config.labels');
  requireStringMap(config.annotations, 'config.annotations');
  optionalRelativePath(config.log_path, 'config.log_path');
  const pod = rt.getSandbox(podId);
  if (!pod) throw notFound(`pod sandbox "${podId}" not found`);
  const name = config.metadata!.name;
  const attempt = config.metadata!.attempt;
  const id = await rt.locks.run(pod.id, async () => {
    const ctx = `create container ${name} in pod ${podLabel(pod)}`;
    call.signal.throwIfAborted();
    if (pod.phase !== 'ready' || !rt.sandboxes.get(pod.id)) throw failedPrecondition(`${ctx}: the pod sandbox is not ready`);
    const features = rt.requireFeatures();
    const imageName = config.image!.image;
    if (isCheckpointArchiveRef(imageName)) return createRestoredLocked(rt, pod, config, features, ctx);
    const image = rt.opts.images.resolve(imageName);
    if (!image) throw notFound(`${ctx}: image "${imageName}" not found; pull it first`);
    const dup = rt.containers.list().find((c) => c.sandboxId === pod.id && c.name === name && c.attempt === attempt);
    if (dup) throw alreadyExists(`${ctx}: a container named ${name} (attempt ${attempt}) already exists in this pod as ${dup.id}`);

    const rootfs = await rt.opts.images.rootfs(image.id);
    const sc = config.linux?.security_context;
    const choice = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? '');
    let seccompProfileText: string | undefined;
    if (choice.kind === 'localhost') {
      try {
        seccompProfileText = await readFile(choice.path, 'utf8');
      } catch (err) {
        throw invalidArgument(`${ctx}: seccomp profile ${choice.path} cannot be read: ${(err as Error).message}`);
      }
    }
    const [imageVolumes, passwd, group] = await Promise.all([resolveImageVolumes(rt, config, ctx), rt.imageFiles.read(rootfs, 'etc/passwd'), rt.imageFiles.read(rootfs, 'etc/group')]);
    const mapped = mapContainerConfig({
      config,
      imageVolumes,
      image: image.config,
      files: { passwd, group },
      seccompProfileText,
      podPrivileged: pod.privileged,
      appArmorProfiles: appArmorProfileName(config.linux?.security_context?.apparmor, config.linux?.security_context?.apparmor_profile ?? '') === undefined ? undefined : await loadedAppArmorProfiles(),
    });
    for (const note of mapped.notes) rt.logOnce(note);
    const seccompFilter = execFilter(rt, mapped.seccomp, ctx);
    const terminal = config.tty && rt.driver.terminalsSupported;
    if (config.tty && !terminal) rt.logOnce('containers asking for a TTY run without one: the runsc reaper, which holds terminals, is not running (see the daemon log)');

    const id = newRecordId();
    const rec: ContainerRecord = {
      ...newContainerFields(id, pod, config),
      image: imageName,
      imageId: image.id,
      mounts: mountRecords(mapped.mounts),
      stdin: config.stdin,
      stdinOnce: config.stdin_once,
      tty: config.tty,
      terminal,
      resources: mapped.resources,
      stopSignal: mapped.stopSignal,
      user: mapped.user,
      env: mapped.env,
      cwd: mapped.cwd,
      capabilities: resolveCapabilities({ add: mapped.capabilities.add, drop: mapped.capabilities.drop, privileged: mapped.privileged, known: features.capabilities }),
      noNewPrivileges: mapped.noNewPrivileges,
      seccompFilter,
    };
    // The image holds from now on, beside the record and everything after it: writing the store's holders file
    // is the longest step here, and runsc sees the rootfs only at StartContainer. A failure waits for it, then undoes it.
    const holding = (async () => {
      await rt.opts.images.acquire(image.id, id);
      for (const [i, v] of imageVolumes) await rt.opts.images.acquire(v.imageRef, `${id}/image-volume-${i}`);
    })();
    holding.catch(() => undefined);
    try {
      await rt.containers.put(rec);
      call.signal.throwIfAborted();
      const dir = rt.containerDir(id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // A terminal's console socket opens now; other stdio goes to runsc
      // only at start, so the FIFOs and the log open while the bundle is made.
      const opening = rt.io.open(rec, 'create');
      const create = async (): Promise<void> => {
        // containerd makes a missing host path a directory rather than failing.
        for (const m of mapped.mounts) {
          if (!(await stat(m.hostPath).catch(() => undefined))) await mkdir(m.hostPath, { recursive: true, mode: 0o755 });
        }
        const spec = buildContainerSpec({
          sandboxId: pod.id,
          rootfsDir: rootfs,
          readonlyRootfs: mapped.readonlyRootfs,
          args: mapped.args,
          // As containerd: a terminal without TERM confuses most programs.
          env: terminal && !mapped.env.some((e) => e.startsWith('TERM=')) ? [...mapped.env, 'TERM=xterm'] : mapped.env,
          cwd: mapped.cwd,
          user: mapped.user,
          terminal,
          hostname: pod.hostname,
          capabilities: mapped.capabilities,
          privileged: mapped.privileged,
          knownCapabilities: features.capabilities,
          noNewPrivileges: mapped.noNewPrivileges,
          mounts: mapped.mounts,
          etcFiles: pod.etcFiles,
          maskedPaths: mapped.maskedPaths,
          readonlyPaths: mapped.readonlyPaths,
          resources: specResources(mapped.resources),
          oomScoreAdj: mapped.resources.oomScoreAdj || undefined,
          daemonOomScoreAdj: rt.daemonOomScoreAdj,
          seccomp: mapped.seccomp,
          seccompHelper: seccompFilter ? rt.opts.infra.seccompHelper : undefined,
          annotations: { 'io.kubernetes.cri.container-name': name, 'io.kubernetes.cri.image-name': imageName },
          sharedPidNamespace: mapped.sharedPidNamespace,
          submounts: await submountsOf(mapped.mounts.filter((m) => !m.image)),
          pathMounts: await pathMounts({
            rootfsDir: rootfs,
            masked: mapped.maskedPaths ?? [],
            readonly: mapped.readonlyPaths ?? [],
            emptyFile: rt.maskFile,
            taken: new Set(mapped.mounts.map((m) => m.containerPath)),
          }),
        });
        call.signal.throwIfAborted();
        const io = terminal ? containerIo(await opening) : undefined;
        await rt.driver.prepareContainer({ id, sandboxId: pod.id, bundleDir: rt.containerBundleDir(id), spec, terminal: io?.kind === 'tty' ? io : undefined, runscFlags: recordedRunscFlags(pod.annotations) });
      };
      // The sandbox cgroup grows by this container's limits (the host cannot limit it alone); the record above already counts.
      await sideBySide([holding, opening, create(), applyPodLimits(rt, pod)]);
      call.signal.throwIfAborted();
      rec.phase = 'created';
      await rt.containers.put(rec);
    } catch (err) {
      await holding.catch(() => undefined);
      await rollbackContainer(rt, rec);
      await applyPodLimits(rt, pod).catch((e: unknown) => rt.logger.error({ err: e, pod: podLabel(pod) }, 'rollback: restoring the sandbox cgroup limits failed'));
      throw wrapError(err, ctx);
    }
    rt.logger.info({ container: id, name, pod: podLabel(pod), image: imageName }, 'container created');
    rt.emit('CONTAINER_CREATED_EVENT', id, pod);
    return id;
  });
  return { container_id: id };
}

/** Image volumes as snapshot paths: the image must be on the node, its sub path must exist in it. */
async function resolveImageVolumes(rt: PodRuntime, config: ContainerConfig__Output, ctx: string): Promise<Map<number, { hostPath: string; image: string; imageRef: string }>> {
  const out = new Map<number, { hostPath: string; image: string; imageRef: string }>();
  for (const v of imageVolumeRequests(config)) {
    const img = rt.opts.images.resolve(v.image);
    if (!img) throw notFound(`${ctx}: image "${v.image}" of image volume config.mounts[${v.index}] not found; pull it first`);
    const rootfs = await rt.opts.images.rootfs(img.id);
    let hostPath = rootfs;
    if (v.subPath) {
      const found = await resolveInImage(rootfs, `/${v.subPath}`);
      if (!found?.dir) throw invalidArgument(`${ctx}: config.mounts[${v.index}].image_sub_path "${v.subPath}" is not a directory in image ${v.image}`);
      hostPath = join(rootfs, found.path);
    }
    out.set(v.index, { hostPath, image: v.image, imageRef: img.id });
  }
  return out;
}

/**
 * The filter exec'd processes of a container get (runsc applies the
 * profile to its first process only); undefined without a profile, or when
 * no exec helper exists for this architecture (logged once).
 */
function execFilter(rt: PodRuntime, profile: OciSeccomp | undefined, ctx: string): string | undefined {
  if (!profile) return undefined;
  if (!rt.opts.infra.seccompHelper) {
    rt.logOnce(`seccomp profiles apply to a container's first process only on ${process.arch}: the exec helper is x86-64 code`);
    return undefined;
  }
  return bpfHex(compileSeccomp(profile, ctx));
}
