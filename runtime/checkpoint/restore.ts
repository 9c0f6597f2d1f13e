/**
 * Restoring a container from a checkpoint archive (archive.ts), in two RPC
 * steps: CreateContainer with the archive as image makes a created
 * container of the archive's process; StartContainer replaces the pod's
 * cold-booted sandbox with the one restored from the archive.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerConfig__Output } from '../../cri-api/generated/runtime/v1/ContainerConfig.js';
import { failedPrecondition, internal, invalidArgument, notFound, wrapError } from '../../cri-api/errors.js';
import { requireAbsolutePath } from '../../cri-api/validate.js';
import type { ImageRecord } from '../../image-store/index.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { rollbackContainer } from '../core/teardown.js';
import { containerIo } from '../logs/container-io.js';
import { newContainerFields, newRecordId, nowNs, podLabel, type ContainerRecord, type SandboxRecord } from '../records/store.js';
import type { RunscFeatures } from '../runsc/features.js';
import type { RunscNetwork } from '../runsc/runsc.js';
import { recordedRunscFlags } from '../runsc/gvisor-flags.js';
import { bpfHex, compileSeccomp } from '../seccomp/bpf.js';
import { runtimeDefaultSeccomp } from '../seccomp/default-profile.js';
import { ALL_LINUX_CAPABILITIES, resolveCapabilities } from '../spec/capabilities.js';
import { mountRecords, parseSeccompProfile, seccompChoice } from '../spec/container-config.js';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, readBundleSpec, writeBundle, type BindMount, type OciSeccomp, type OciSpec } from '../spec/oci-spec.js';
import { IMAGE_DIR_NAME, readCheckpointArchive, type CheckpointManifest } from './archive.js';
import { restoreContainerSpec } from './restore-spec.js';

/** Bound on restoring a sandbox from a checkpoint (StartContainer has no timeout of its own). */
const RESTORE_TIMEOUT_MS = 120_000;

/**
 * CreateContainer whose image is a checkpoint archive: unpacks it, checks
 * its image against the manifest's digests and that it can be restored
 * here, and makes a created container whose StartContainer restores the
 * pod's sandbox from it. Process, identity and image come from the
 * checkpoint; metadata, labels, annotations, log path, volumes,
 * capabilities, privilege and seccomp from the new config, which must
 * allow everything the checkpointed container had (restore-spec.ts). A
 * refused restore leaves nothing: the checks run before any record exists.
 */
export async function createRestoredLocked(rt: PodRuntime, pod: SandboxRecord, config: ContainerConfig__Output, features: RunscFeatures, ctx: string): Promise<string> {
  const archive = config.image!.image;
  const { name } = config.metadata!;
  const present = rt.containers.list().filter((x) => x.sandboxId === pod.id);
  if (present.length > 0) {
    throw failedPrecondition(`${ctx}: restoring ${archive} replaces the pod's sandbox, and the pod already has containers (${present.map((x) => x.name).join(', ')}); restore into a pod with none`);
  }
  const id = newRecordId();
  const unpacked = rt.restoreDir(id);
  let prepared: PreparedRestore;
  try {
    prepared = await prepareRestore(rt, pod, config, features, archive, unpacked, ctx);
  } catch (err) {
    await rm(unpacked, { recursive: true, force: true });
    throw wrapError(err, ctx);
  }
  const { manifest, image, spec, policy, volumes, seccompFilter } = prepared;
  const { imageRef, ...saved } = manifest.container;
  const rec: ContainerRecord = {
    ...saved,
    ...newContainerFields(id, pod, config),
    imageId: image.id,
    mounts: mountRecords(volumes),
    terminal: false,
    capabilities: policy.capabilities,
    noNewPrivileges: policy.noNewPrivileges,
    seccompFilter,
    restore: { archive, imageDir: join(unpacked, IMAGE_DIR_NAME) },
  };
  await rt.containers.put(rec);
  try {
    await rt.opts.images.acquire(image.id, id);
    const dir = rt.containerDir(id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rt.io.open(rec, 'create');
    await writeBundle(rt.containerBundleDir(id), spec);
    rec.phase = 'created';
    await rt.containers.put(rec);
  } catch (err) {
    await rollbackContainer(rt, rec);
    throw wrapError(err, ctx);
  }
  rt.logger.info({ container: id, name, pod: podLabel(pod), archive, image: imageRef, from: `${manifest.pod.namespace}/${manifest.pod.name}/${saved.name}` }, 'container created from a checkpoint');
  rt.emit('CONTAINER_CREATED_EVENT', id, pod);
  return id;
}

interface PreparedRestore {
  manifest: CheckpointManifest;
  image: ImageRecord;
  spec: OciSpec;
  policy: NewConfigPolicy;
  volumes: BindMount[];
  /** The new config's seccomp as the exec helper's filter (see create-container.ts execFilter). */
  seccompFilter?: string;
}

/** Unpacks and verifies the archive into `unpacked`, and checks it against this node and the new config. */
async function prepareRestore(
  rt: PodRuntime, pod: SandboxRecord, config: ContainerConfig__Output, features: RunscFeatures, archive: string, unpacked: string, ctx: string,
): Promise<PreparedRestore> {
  const manifest = await readCheckpointArchive(archive, unpacked);
  const saved = manifest.container;
  const refuse = (why: string): never => {
    throw failedPrecondition(`${ctx}: checkpoint ${archive} ${why}`);
  };
  if (manifest.runscVersion !== features.version) refuse(`was taken by ${manifest.runscVersion}; this node runs ${features.version}, and runsc restores only its own checkpoints`);
  if (manifest.sandboxContainers.length !== 1) {
    refuse(`holds ${manifest.sandboxContainers.length} app containers (${manifest.sandboxContainers.map((m) => m.name).join(', ')}); runsc restores a sandbox only with all of them, so only a pod with one container (running or exited) can be restored`);
  }
  // A terminal would need a new console received by the reaper at restore: not done (nor tried) here.
  if (manifest.spec.process.terminal) refuse('is of a container with a terminal (tty: true); restoring terminals is not supported');
  if (manifest.pod.hostNetwork !== pod.hostNetwork) refuse(`is of a ${manifest.pod.hostNetwork ? 'host-network' : 'pod-network'} pod; this pod is not`);
  const image = rt.opts.images.resolve(saved.imageId) ?? rt.opts.images.resolve(saved.image);
  if (!image) throw notFound(`${ctx}: image ${saved.image} (${saved.imageId}) of checkpoint ${archive} is not on this node; pull it first`);
  const volumes: BindMount[] = config.mounts.map((m, i) => {
    if (m.image?.image) throw invalidArgument(`config.mounts[${i}]: image volumes cannot be given to a container restored from a checkpoint`);
    return { containerPath: requireAbsolutePath(m.container_path, `config.mounts[${i}].container_path`), hostPath: requireAbsolutePath(m.host_path, `config.mounts[${i}].host_path`), readonly: m.readonly };
  });
  const policy = await newConfigPolicy(pod, config, features);
  const spec = restoreContainerSpec(manifest.spec, {
    sandboxId: pod.id,
    rootfsDir: await rt.opts.images.rootfs(image.id),
    hostname: pod.hostname,
    oldEtcFiles: manifest.pod.etcFiles,
    newEtcFiles: pod.etcFiles,
    mounts: volumes,
    seccompHelper: rt.opts.infra.seccompHelper,
    maskFile: rt.maskFile,
    ...policy,
    runscFlags: recordedRunscFlags(pod.annotations),
    minOomScoreAdj: rt.daemonOomScoreAdj,
  });
  const seccompFilter = policy.seccomp && rt.opts.infra.seccompHelper ? bpfHex(compileSeccomp(policy.seccomp, ctx)) : undefined;
  return { manifest, image, spec, policy, volumes, seccompFilter };
}

/** What the new config lets the restored container have, worked out as CreateContainer does for a new one. */
interface NewConfigPolicy {
  capabilities: string[];
  privileged: boolean;
  noNewPrivileges: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  seccomp?: OciSeccomp;
}

async function newConfigPolicy(pod: SandboxRecord, config: ContainerConfig__Output, features: RunscFeatures): Promise<NewConfigPolicy> {
  const sc = config.linux?.security_context;
  const privileged = sc?.privileged ?? false;
  if (privileged && !pod.privileged) throw invalidArgument('config.linux.security_context.privileged: a privileged container needs a privileged pod sandbox');
  const add = sc?.capabilities?.add_capabilities ?? [];
  const drop = sc?.capabilities?.drop_capabilities ?? [];
  let seccomp: OciSeccomp | undefined;
  const choice = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? '');
  // As mapContainerConfig: RuntimeDefault depends on the capability set; privileged runs unconfined.
  if (choice.kind === 'runtime-default') seccomp = runtimeDefaultSeccomp(resolveCapabilities({ add, drop, privileged: false, known: ALL_LINUX_CAPABILITIES }));
  if (choice.kind === 'localhost') {
    const text = await readFile(choice.path, 'utf8').catch((err: unknown) => {
      throw invalidArgument(`seccomp profile ${choice.path} cannot be read: ${(err as Error).message}`);
    });
    seccomp = parseSeccompProfile(text, choice.path);
  }
  return {
    capabilities: resolveCapabilities({ add, drop, privileged, known: features.capabilities }),
    privileged,
    noNewPrivileges: sc?.no_new_privs ?? false,
    maskedPaths: privileged ? [] : sc && sc.masked_paths.length > 0 ? [...sc.masked_paths] : [...DEFAULT_MASKED_PATHS],
    readonlyPaths: privileged ? [] : sc && sc.readonly_paths.length > 0 ? [...sc.readonly_paths] : [...DEFAULT_READONLY_PATHS],
    seccomp: privileged ? undefined : seccomp,
  };
}

/**
 * StartContainer of a container made from a checkpoint: the pod's
 * cold-booted sandbox is replaced by the one restored from the archive,
 * whose processes continue where they were. On failure the pod gets a
 * fresh sandbox again and the container is exited with StartError.
 */
export async function startRestoredLocked(rt: PodRuntime, c: ContainerRecord): Promise<void> {
  const restore = c.restore!;
  const ctx = `start container ${c.name} (${c.id.slice(0, 12)}) from checkpoint ${restore.archive}`;
  if (c.phase !== 'created' || !restore.imageDir) throw failedPrecondition(`${ctx}: container is ${c.phase}, only a created container can start`);
  const pod = rt.sandboxes.get(c.sandboxId);
  if (pod?.phase !== 'ready') throw failedPrecondition(`${ctx}: its pod sandbox is not ready`);
  const others = rt.containers.list().filter((x) => x.sandboxId === pod.id && x.id !== c.id);
  if (others.length > 0) throw failedPrecondition(`${ctx}: the pod has other containers now (${others.map((x) => x.name).join(', ')}); restoring would replace their sandbox`);
  const features = rt.requireFeatures();
  const started = Date.now();
  try {
    const spec = await readBundleSpec(rt.containerBundleDir(c.id));
    const io = containerIo(rt.io.get(c.id) ?? (await rt.io.open(c, 'create')));
    if (io.kind !== 'fifo') throw internal('a restored container has no terminal');
    if (!pod.hostNetwork) await rt.opts.network.reclaimAddresses(pod.id);
    pod.pid = await rt.driver.restoreSandbox({
      ...sandboxBoot(rt, pod, features),
      imageDir: restore.imageDir,
      containers: [{ id: c.id, bundleDir: rt.containerBundleDir(c.id), spec, io }],
      timeoutMs: RESTORE_TIMEOUT_MS,
    });
  } catch (err) {
    await rebootSandbox(rt, pod, features);
    await rt.exits.record(c, 128, 'StartError', (err as Error).message);
    throw wrapError(err, ctx);
  }
  await rt.sandboxes.put(pod);
  c.phase = 'running';
  c.startedAtNs = nowNs();
  c.restore = { archive: restore.archive };
  await rt.containers.put(c);
  await rm(rt.restoreDir(c.id), { recursive: true, force: true });
  rt.exits.watch(c);
  rt.logger.info({ container: c.id, name: c.name, pod: podLabel(pod), archive: restore.archive, ms: Date.now() - started }, 'container restored from a checkpoint');
  rt.emit('CONTAINER_STARTED_EVENT', c.id, pod);
}

/** How the pod's sandbox is booted: also what a restore of it needs. */
function sandboxBoot(rt: PodRuntime, pod: SandboxRecord, features: RunscFeatures): { id: string; bundleDir: string; networkMode: RunscNetwork; netnsPath?: string; needsNetnsWorkaround: boolean; logPath: string } {
  const dir = rt.podDir(pod.id);
  return { id: pod.id, bundleDir: join(dir, 'bundle'), networkMode: pod.hostNetwork ? 'host' : 'sandbox', netnsPath: pod.netnsPath, needsNetnsWorkaround: features.netnsWorkaround, logPath: join(dir, 'sandbox.log') };
}

/** After a failed restore: boots the pod's own sandbox again from its bundle (unless it still runs: the restore failed before replacing it), or marks the pod NOTREADY. */
async function rebootSandbox(rt: PodRuntime, pod: SandboxRecord, features: RunscFeatures): Promise<void> {
  const boot = sandboxBoot(rt, pod, features);
  if ((await rt.driver.state(pod.id).catch(() => undefined))?.status === 'running') return;
  try {
    const spec = await readBundleSpec(boot.bundleDir);
    if (!pod.hostNetwork) await rt.opts.network.reclaimAddresses(pod.id);
    pod.pid = await rt.driver.createSandbox({ ...boot, spec });
    await rt.sandboxes.put(pod);
  } catch (err) {
    rt.logger.error({ err, pod: podLabel(pod) }, 'the pod sandbox could not be booted again after a failed restore; marking it NOTREADY');
    pod.phase = 'notready';
    await rt.sandboxes.put(pod);
    rt.emit('CONTAINER_STOPPED_EVENT', pod.id, pod);
  }
}
