/**
 * The checkpoint archive CheckpointContainer writes and a restoring
 * CreateContainer reads: an uncompressed tar holding `manifest.json` (what a
 * restore needs besides runsc's image) and `checkpoint/` (the directory
 * `runsc checkpoint --image-path` filled; runsc compresses its pages itself).
 * Also the rewrite of the checkpointed container's OCI spec for its new pod.
 */
import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { c as tarCreate, x as tarExtract } from 'tar';
import { replaceFileAtomic } from '../../common/index.js';
import { failedPrecondition, invalidArgument, notFound } from '../../cri-api/errors.js';
import type { OciMount, OciSpec, PodEtcFiles } from '../spec/oci-spec.js';
import { ANNOTATION_SANDBOX_ID } from '../spec/oci-spec.js';
import { SECCOMP_HELPER_PATH } from '../seccomp/exec-helper.js';
import type { ContainerRecord } from '../records/store.js';

export const MANIFEST_NAME = 'manifest.json';
export const IMAGE_DIR_NAME = 'checkpoint';
export const CHECKPOINT_FORMAT = 'gvisor-cri-checkpoint';
export const CHECKPOINT_VERSION = 1;

/** The container's process and identity as the record holds them: what a restored record copies. */
export type CheckpointedContainer = Pick<
  ContainerRecord,
  'id' | 'name' | 'attempt' | 'image' | 'imageId' | 'mounts' | 'stdin' | 'stdinOnce' | 'tty' | 'resources' | 'stopSignal' | 'user' | 'env' | 'cwd' | 'capabilities' | 'noNewPrivileges' | 'seccompFilter'
> & { imageRef: string };

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  /** ISO time the checkpoint was taken. */
  createdAt: string;
  /** First line of `runsc --version`: runsc restores only its own checkpoints. */
  runscVersion: string;
  pod: { id: string; name: string; namespace: string; uid: string; hostNetwork: boolean; etcFiles?: PodEtcFiles };
  container: CheckpointedContainer;
  /** The container's OCI spec as runsc ran it (bundle config.json). */
  spec: OciSpec;
  /**
   * Every app container runsc knew in the sandbox (running or exited, not
   * removed): the checkpoint holds them all, and runsc resumes a restored
   * sandbox only once each of them is restored.
   */
  sandboxContainers: { id: string; name: string }[];
}

/**
 * Writes `manifest` and the runsc image in `workDir/checkpoint` as a tar at
 * `location`, atomically and durably (common/atomic-write.ts): an existing
 * file is replaced whole, never seen half-written.
 */
export async function writeCheckpointArchive(location: string, workDir: string, manifest: CheckpointManifest): Promise<void> {
  const manifestPath = join(workDir, MANIFEST_NAME);
  const fh = await open(manifestPath, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(manifest, null, 2));
  } finally {
    await fh.close();
  }
  await replaceFileAtomic(
    location,
    async (tmp) => {
      await tarCreate({ file: tmp, cwd: workDir, portable: true, mode: 0o600 }, [MANIFEST_NAME, IMAGE_DIR_NAME]);
      await chmod(tmp, 0o600);
    },
    { durability: 'durable' },
  );
}

/** True when a CreateContainer image names a checkpoint archive: image references never start with '/'. */
export function isCheckpointArchiveRef(image: string): boolean {
  return image.startsWith('/');
}

/**
 * Unpacks the archive at `path` into `destDir` (manifest + runsc image only:
 * regular files and directories, nothing outside the two names) and returns
 * its checked manifest.
 */
export async function readCheckpointArchive(path: string, destDir: string): Promise<CheckpointManifest> {
  if (path.split('/').includes('..')) throw invalidArgument(`checkpoint archive "${path}" must not contain ".."`);
  const st = await stat(path).catch(() => undefined);
  if (!st) throw notFound(`checkpoint archive ${path} does not exist`);
  if (!st.isFile()) throw invalidArgument(`checkpoint archive ${path} is not a regular file`);
  await mkdir(destDir, { recursive: true, mode: 0o700 });
  const refused: string[] = [];
  try {
    await tarExtract({
      file: path,
      cwd: destDir,
      strict: true,
      preserveOwner: false,
      filter: (entryPath, entry) => {
        const p = entryPath.replace(/^\.\//, '').replace(/\/$/, '');
        const type = 'type' in entry ? entry.type : undefined;
        const wanted = p === MANIFEST_NAME || p === IMAGE_DIR_NAME || /^checkpoint\/[A-Za-z0-9_.-]+$/.test(p);
        const plain = type === 'File' || type === 'OldFile' || type === 'Directory';
        if (!wanted || !plain) refused.push(entryPath);
        return wanted && plain;
      },
    });
  } catch (err) {
    throw invalidArgument(`checkpoint archive ${path} cannot be unpacked: ${(err as Error).message}`);
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(join(destDir, MANIFEST_NAME), 'utf8'));
  } catch {
    throw invalidArgument(`${path} is not a gvisor-cri checkpoint archive: no readable ${MANIFEST_NAME}${refused.length > 0 ? ` (skipped entries: ${refused.slice(0, 5).join(', ')})` : ''}`);
  }
  return checkManifest(manifest, path);
}

function checkManifest(m: unknown, path: string): CheckpointManifest {
  const doc = m as Partial<CheckpointManifest> | null;
  if (!doc || typeof doc !== 'object' || doc.format !== CHECKPOINT_FORMAT) throw invalidArgument(`${path} is not a gvisor-cri checkpoint archive (${MANIFEST_NAME} has no format "${CHECKPOINT_FORMAT}")`);
  if (doc.version !== CHECKPOINT_VERSION) throw failedPrecondition(`checkpoint archive ${path} has format version ${String(doc.version)}; this gvisor-cri reads version ${CHECKPOINT_VERSION}`);
  if (!doc.pod || !doc.container || !doc.spec || !Array.isArray(doc.sandboxContainers) || typeof doc.runscVersion !== 'string') {
    throw invalidArgument(`checkpoint archive ${path}: ${MANIFEST_NAME} lacks pod, container, spec, sandboxContainers or runscVersion`);
  }
  return doc as CheckpointManifest;
}

export interface RestoreSpecInput {
  sandboxId: string;
  rootfsDir: string;
  hostname: string;
  /** The checkpointed pod's and the new pod's resolv.conf/hosts/hostname. */
  oldEtcFiles?: PodEtcFiles;
  newEtcFiles?: PodEtcFiles;
  /** Host paths the new config gives, by container path: they replace the checkpointed ones. */
  mounts: readonly { containerPath: string; hostPath: string }[];
  /** This node's seccomp exec helper, replacing the checkpointed node's. */
  seccompHelper?: string;
}

/**
 * The checkpointed container's spec, moved into its new pod: new sandbox id,
 * the image's rootfs on this node, the new pod's /etc files, and new host
 * paths for its volumes. The set of mounts stays as checkpointed: runsc
 * matches the restored mounts against the saved ones.
 */
export function restoreContainerSpec(saved: OciSpec, input: RestoreSpecInput): OciSpec {
  const etc = new Map<string, { old?: string; next?: string }>([
    ['/etc/hosts', { old: input.oldEtcFiles?.hosts, next: input.newEtcFiles?.hosts }],
    ['/etc/resolv.conf', { old: input.oldEtcFiles?.resolvConf, next: input.newEtcFiles?.resolvConf }],
    ['/etc/hostname', { old: input.oldEtcFiles?.hostname, next: input.newEtcFiles?.hostname }],
  ]);
  const byPath = new Map(input.mounts.map((m) => [m.containerPath, m.hostPath]));
  const unknown = input.mounts.filter((m) => !saved.mounts.some((s) => s.destination === m.containerPath && s.type === 'bind'));
  if (unknown.length > 0) {
    throw invalidArgument(`restore cannot add mounts the checkpointed container did not have: ${unknown.map((m) => m.containerPath).join(', ')}`);
  }
  const mounts: OciMount[] = saved.mounts.map((m) => {
    const given = byPath.get(m.destination);
    if (given !== undefined) return { ...m, source: given };
    if (m.destination === SECCOMP_HELPER_PATH && input.seccompHelper) return { ...m, source: input.seccompHelper };
    const e = etc.get(m.destination);
    if (e && e.old !== undefined && m.source === e.old) {
      if (!e.next) throw failedPrecondition(`the new pod has no ${m.destination} to give the restored container`);
      return { ...m, source: e.next };
    }
    return { ...m };
  });
  return {
    ...saved,
    root: { ...saved.root, path: input.rootfsDir },
    hostname: input.hostname,
    mounts,
    annotations: { ...saved.annotations, [ANNOTATION_SANDBOX_ID]: input.sandboxId },
  };
}
