/**
 * The checkpoint archive CheckpointContainer writes and a restoring
 * CreateContainer reads: an uncompressed tar holding `manifest.json` (what a
 * restore needs besides runsc's image) and `checkpoint/` (the directory
 * `runsc checkpoint --image-path` filled; runsc compresses its pages itself).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { c as tarCreate, x as tarExtract } from 'tar';
import { replaceFileAtomic } from '../../common/index.js';
import { failedPrecondition, invalidArgument, notFound } from '../../cri-api/errors.js';
import type { OciSpec, PodEtcFiles } from '../spec/oci-spec.js';
import type { ContainerRecord } from '../records/store.js';

export const MANIFEST_NAME = 'manifest.json';
export const IMAGE_DIR_NAME = 'checkpoint';
export const CHECKPOINT_FORMAT = 'gvisor-cri-checkpoint';
/** 2: the manifest holds the digests of the runsc image's files. */
export const CHECKPOINT_VERSION = 2;

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
  /**
   * sha256 of each file of the runsc image (`checkpoint/<name>`), taken
   * when it was written: a restore refuses an image whose files differ.
   */
  imageDigests: Record<string, string>;
}

/**
 * Writes `manifest`, with the digests of the runsc image in
 * `workDir/checkpoint`, and that image as a tar at `location`, atomically
 * and durably (common/atomic-write.ts): an existing file is replaced whole,
 * never seen half-written. Returns the manifest written.
 */
export async function writeCheckpointArchive(location: string, workDir: string, fields: Omit<CheckpointManifest, 'imageDigests'>): Promise<CheckpointManifest> {
  const manifest: CheckpointManifest = { ...fields, imageDigests: await imageDigests(join(workDir, IMAGE_DIR_NAME)) };
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
  return manifest;
}

/** sha256 of every file in the runsc image directory, by name. */
async function imageDigests(imageDir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(imageDir)).sort()) out[name] = await sha256File(join(imageDir, name));
  return out;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return `sha256:${hash.digest('hex')}`;
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
  const checked = checkManifest(manifest, path);
  await verifyImage(join(destDir, IMAGE_DIR_NAME), checked.imageDigests, path);
  return checked;
}

/** Refuses a runsc image whose files are not exactly those the manifest's digests name. */
async function verifyImage(imageDir: string, digests: Record<string, string>, path: string): Promise<void> {
  const present = (await readdir(imageDir).catch(() => [] as string[])).sort();
  const named = Object.keys(digests).sort();
  const extra = present.filter((n) => !named.includes(n));
  const absent = named.filter((n) => !present.includes(n));
  if (extra.length > 0 || absent.length > 0) {
    throw invalidArgument(`checkpoint archive ${path}: its image files do not match ${MANIFEST_NAME} (${[...extra.map((n) => `unlisted ${n}`), ...absent.map((n) => `missing ${n}`)].join(', ')})`);
  }
  for (const name of named) {
    if ((await sha256File(join(imageDir, name))) !== digests[name]) throw invalidArgument(`checkpoint archive ${path}: image file ${IMAGE_DIR_NAME}/${name} does not match its digest in ${MANIFEST_NAME}; the archive was altered or damaged`);
  }
}

function checkManifest(m: unknown, path: string): CheckpointManifest {
  const doc = m as Partial<CheckpointManifest> | null;
  if (!doc || typeof doc !== 'object' || doc.format !== CHECKPOINT_FORMAT) throw invalidArgument(`${path} is not a gvisor-cri checkpoint archive (${MANIFEST_NAME} has no format "${CHECKPOINT_FORMAT}")`);
  if (doc.version !== CHECKPOINT_VERSION) throw failedPrecondition(`checkpoint archive ${path} has format version ${String(doc.version)}; this gvisor-cri reads version ${CHECKPOINT_VERSION}`);
  if (!doc.pod || !doc.container || !doc.spec || !Array.isArray(doc.sandboxContainers) || typeof doc.runscVersion !== 'string') {
    throw invalidArgument(`checkpoint archive ${path}: ${MANIFEST_NAME} lacks pod, container, spec, sandboxContainers or runscVersion`);
  }
  const spec = doc.spec as Partial<OciSpec>;
  const caps = spec.process?.capabilities;
  const lists = caps ? [caps.bounding, caps.effective, caps.permitted, caps.inheritable ?? [], caps.ambient ?? []] : [];
  if (
    typeof spec.root?.path !== 'string' || !Array.isArray(spec.process?.args) || !Array.isArray(spec.mounts) || !Array.isArray(spec.linux?.namespaces)
    || typeof spec.annotations !== 'object' || spec.annotations === null || !lists.every((l) => Array.isArray(l) && l.every((c) => typeof c === 'string'))
  ) {
    throw invalidArgument(`checkpoint archive ${path}: the spec in ${MANIFEST_NAME} is not an OCI spec gvisor-cri wrote`);
  }
  const digests: unknown = doc.imageDigests;
  if (!digests || typeof digests !== 'object' || Object.values(digests).some((v) => typeof v !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(v))) {
    throw invalidArgument(`checkpoint archive ${path}: ${MANIFEST_NAME} has no imageDigests of the form sha256:<hex>`);
  }
  return doc as CheckpointManifest;
}
