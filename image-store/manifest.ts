import { CriError, GrpcStatus, failedPrecondition, invalidArgument, notFound } from '../cri-api/errors.js';

export const MEDIA_TYPES = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** Accept header for manifest requests: every kind we can use, best first. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest].join(', ');

const LAYER_TYPES = new Set([
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
]);

const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** A manifest or index is read whole into memory: one larger than this is refused. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** The image config is read whole into memory (and kept for verbose ImageStatus): capped like a manifest. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** What one image may demand of the node; an image over a limit is refused with RESOURCE_EXHAUSTED naming it. */
export interface ImageLimits {
  /** Layers of one image (option image-max-layers). */
  maxLayers: number;
  /** Uncompressed bytes the layers of one image may unpack to in all (option image-max-unpacked-mib). */
  maxUnpackedBytes: number;
}

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = { maxLayers: 128, maxUnpackedBytes: 16384 * 1024 * 1024 };

/**
 * The node's limits, set once at daemon start. Process-wide rather than an
 * option of ImageStore because they are node policy, the same for every
 * store, and read deep in manifest parsing and layer application.
 */
let limits: Readonly<ImageLimits> = DEFAULT_IMAGE_LIMITS;

export function setImageLimits(next: ImageLimits): void {
  limits = { ...next };
}

export function imageLimits(): Readonly<ImageLimits> {
  return limits;
}

export function resourceExhausted(message: string): CriError {
  return new CriError(GrpcStatus.RESOURCE_EXHAUSTED, message);
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  kind: 'manifest';
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  kind: 'index';
  manifests: Descriptor[];
}

/** The "config" part of an image config JSON (OCI image spec, "config" field). */
export interface OciImageConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

export interface ImageConfigFile {
  architecture?: string;
  os?: string;
  config?: OciImageConfig;
  rootfs: { type: string; diff_ids: string[] };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseDescriptor(raw: unknown, where: string): Descriptor {
  if (!isObject(raw)) throw failedPrecondition(`${where}: descriptor is not an object`);
  const { mediaType, digest, size, platform } = raw;
  if (typeof digest !== 'string' || !DIGEST.test(digest)) throw failedPrecondition(`${where}: unsupported or malformed digest ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw failedPrecondition(`${where}: malformed size of ${digest}`);
  const out: Descriptor = { mediaType: typeof mediaType === 'string' ? mediaType : '', digest, size };
  if (isObject(platform) && typeof platform.os === 'string' && typeof platform.architecture === 'string') {
    out.platform = { os: platform.os, architecture: platform.architecture, variant: typeof platform.variant === 'string' ? platform.variant : undefined };
  }
  return out;
}

/**
 * Parses a manifest or index of any supported kind. `contentType` is the
 * registry's Content-Type header; the document's own mediaType decides when
 * the header is missing or generic.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, what: string): ImageManifest | ImageIndex {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw failedPrecondition(`${what}: manifest is not valid JSON`);
  }
  if (!isObject(doc)) throw failedPrecondition(`${what}: manifest is not a JSON object`);
  const headerType = contentType?.split(';')[0].trim();
  const type = typeof doc.mediaType === 'string' && doc.mediaType !== '' ? doc.mediaType : headerType;
  if (doc.schemaVersion === 1 || type === MEDIA_TYPES.dockerSchema1 || type === MEDIA_TYPES.dockerSchema1Signed) {
    throw failedPrecondition(`${what}: Docker schema 1 manifests are not supported (deprecated format); push the image again with a current client`);
  }
  const isIndex = type === MEDIA_TYPES.ociIndex || type === MEDIA_TYPES.dockerManifestList || (!type && Array.isArray(doc.manifests));
  const isManifest = type === MEDIA_TYPES.ociManifest || type === MEDIA_TYPES.dockerManifest || (!type && isObject(doc.config));
  if (isIndex) {
    if (!Array.isArray(doc.manifests)) throw failedPrecondition(`${what}: index has no "manifests" list`);
    return { kind: 'index', manifests: doc.manifests.map((m, i) => parseDescriptor(m, `${what}: manifests[${i}]`)) };
  }
  if (isManifest) {
    if (!isObject(doc.config) || !Array.isArray(doc.layers)) throw failedPrecondition(`${what}: manifest lacks "config" or "layers"`);
    // Checked before anything is downloaded: an image with thousands of layers costs a snapshot each.
    if (doc.layers.length > limits.maxLayers) {
      throw resourceExhausted(`${what}: image has ${doc.layers.length} layers, over the limit of ${limits.maxLayers} (image-max-layers)`);
    }
    const layers = doc.layers.map((l, i) => parseDescriptor(l, `${what}: layers[${i}]`));
    for (const l of layers) {
      if (l.mediaType !== '' && !LAYER_TYPES.has(l.mediaType)) {
        throw failedPrecondition(`${what}: layer ${l.digest} has unsupported media type "${l.mediaType}" (supported: tar and tar+gzip)`);
      }
    }
    const config = parseDescriptor(doc.config, `${what}: config`);
    if (config.size > MAX_CONFIG_BYTES) {
      throw resourceExhausted(`${what}: image config ${config.digest} is ${config.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit for image configs`);
    }
    return { kind: 'manifest', config, layers };
  }
  throw failedPrecondition(`${what}: unsupported manifest media type "${type ?? 'none'}"`);
}

export function parseImageConfig(bytes: Buffer, layerCount: number, what: string): ImageConfigFile {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw failedPrecondition(`${what}: image config is not valid JSON`);
  }
  if (!isObject(doc) || !isObject(doc.rootfs) || !Array.isArray(doc.rootfs.diff_ids)) {
    throw failedPrecondition(`${what}: image config lacks rootfs.diff_ids`);
  }
  const diffIds = doc.rootfs.diff_ids;
  if (diffIds.some((d) => typeof d !== 'string' || !DIGEST.test(d))) throw failedPrecondition(`${what}: image config has a malformed diff_id`);
  if (diffIds.length !== layerCount) {
    throw failedPrecondition(`${what}: image config lists ${diffIds.length} layers but the manifest has ${layerCount}`);
  }
  return doc as unknown as ImageConfigFile;
}

/** linux/amd64 etc. of the node itself, in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  const architecture = arch[process.arch] ?? process.arch;
  return { os: 'linux', architecture, variant: architecture === 'arm64' ? 'v8' : undefined };
}

/** Picks the manifest for `want` out of an index; a missing variant matches any. */
export function choosePlatform(index: ImageIndex, want: Platform, what: string): Descriptor {
  const candidates = index.manifests.filter((m) => m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture);
  const exact = candidates.find((m) => !want.variant || !m.platform!.variant || m.platform!.variant === want.variant);
  if (exact) return exact;
  const available = index.manifests.map((m) => (m.platform ? [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/') : 'unknown')).join(', ');
  const platform = [want.os, want.architecture, want.variant].filter(Boolean).join('/');
  throw notFound(`${what}: no image for platform ${platform} (available: ${available || 'none'})`);
}

/** The chain id of every prefix of a layer list (OCI image spec, "ChainID"). */
export function chainIds(diffIds: string[], sha256: (s: string) => string): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : `sha256:${sha256(`${out[out.length - 1]} ${d}`)}`);
  return out;
}

export function checkDigest(digest: string): string {
  if (!DIGEST.test(digest)) throw invalidArgument(`malformed digest "${digest}"`);
  return digest.slice('sha256:'.length);
}
