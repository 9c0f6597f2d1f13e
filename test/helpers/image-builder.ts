// Builds OCI / Docker images in memory (tar layers from entry lists, config,
// manifest, index) and pushes them to a registry with the distribution API.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

export interface TarEntry {
  path: string;
  type?: 'file' | 'dir' | 'symlink' | 'link';
  content?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  /** Target of a symlink or hard link. */
  linkpath?: string;
}

export interface LayerSpec {
  entries?: TarEntry[];
  /** A ready-made tar instead of entries. */
  tar?: Buffer;
  /** Default true. */
  gzip?: boolean;
}

export interface ImageConfigSpec {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
}

export interface PushOptions {
  tag?: string;
  layers: LayerSpec[];
  config?: ImageConfigSpec;
  architecture?: string;
  os?: string;
  /** Media types of manifest and layers; default "oci". */
  format?: 'oci' | 'docker';
  /** Credentials for the registry (token flow or basic). */
  auth?: { username: string; password: string };
  /** CA of a TLS registry. */
  caFile?: string;
}

export interface PushedImage {
  /** host/name:tag (tag "latest" when none given). */
  ref: string;
  /** host/name@manifest digest. */
  digestRef: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifestSize: number;
  configDigest: string;
  layerDigests: string[];
  diffIds: string[];
  size: number;
}

const MT = {
  oci: { manifest: 'application/vnd.oci.image.manifest.v1+json', config: 'application/vnd.oci.image.config.v1+json', layer: 'application/vnd.oci.image.layer.v1.tar+gzip', layerPlain: 'application/vnd.oci.image.layer.v1.tar', index: 'application/vnd.oci.image.index.v1+json' },
  docker: { manifest: 'application/vnd.docker.distribution.manifest.v2+json', config: 'application/vnd.docker.container.image.v1+json', layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip', layerPlain: 'application/vnd.docker.image.rootfs.diff.tar', index: 'application/vnd.docker.distribution.manifest.list.v2+json' },
};

export const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A tar stream of exactly these entries, nothing sanitized (malicious layers are tests too). */
export function buildTar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'file';
    const content = type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    const header = new Header({
      path: e.path,
      type: { file: 'File', dir: 'Directory', symlink: 'SymbolicLink', link: 'Link' }[type] as 'File',
      mode: e.mode ?? (type === 'dir' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      size: content.length,
      mtime: e.mtime ?? new Date('2024-01-01T00:00:00Z'),
      linkpath: e.linkpath,
      uname: '',
      gname: '',
    });
    header.encode();
    blocks.push(header.block!);
    if (content.length > 0) {
      blocks.push(content);
      const pad = (512 - (content.length % 512)) % 512;
      if (pad) blocks.push(Buffer.alloc(pad));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export const BUSYBOX_APPLETS = ['sh', 'sleep', 'cat', 'true', 'false', 'echo', 'ls', 'nc', 'httpd', 'wget', 'env', 'id', 'ps', 'mkdir', 'rm', 'touch', 'test', 'kill', 'hostname', 'mount', 'df', 'printenv'];

/** /bin/busybox (busybox-static) with applet symlinks, plus the usual top directories. */
export function busyboxEntries(applets: string[] = BUSYBOX_APPLETS): TarEntry[] {
  const busybox = readFileSync('/bin/busybox');
  return [
    { path: 'bin/', type: 'dir' },
    { path: 'bin/busybox', content: busybox, mode: 0o755 },
    ...applets.map((a): TarEntry => ({ path: `bin/${a}`, type: 'symlink', linkpath: 'busybox' })),
    { path: 'etc/', type: 'dir' },
    { path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' },
    { path: 'etc/group', content: 'root:x:0:\nnobody:x:65534:\n' },
    { path: 'tmp/', type: 'dir', mode: 0o1777 },
    { path: 'root/', type: 'dir', mode: 0o700 },
  ];
}

/**
 * busyboxEntries for identity tests: "user" (1000:1000) is a member of
 * groups 50000 and 1234, listed in that order so that a runtime handing the
 * kernel the image's order shows; root has an empty password, so that
 * busybox's `su` from a setuid-root binary reaches root without a prompt; and
 * /usr/local/bin/busybox is a setuid-root copy of busybox (busybox drops the
 * privilege for most applets, but `su` keeps it and insists on it: "must be
 * suid to work properly" when the exec gave it no euid 0).
 */
export function identityImageEntries(): TarEntry[] {
  const base = busyboxEntries([...BUSYBOX_APPLETS, 'su']).filter((e) => e.path !== 'etc/passwd' && e.path !== 'etc/group');
  return [
    ...base,
    { path: 'etc/passwd', content: 'root::0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' },
    { path: 'etc/group', content: 'root:x:0:\nuser:x:1000:\nbig:x:50000:user\nsmall:x:1234:user\nnobody:x:65534:\n' },
    { path: 'usr/', type: 'dir' },
    { path: 'usr/local/', type: 'dir' },
    { path: 'usr/local/bin/', type: 'dir' },
    { path: 'usr/local/bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o4755 },
  ];
}

/** A layer of `mib` MiB of random bytes (incompressible), for pull benchmarks. */
export function randomLayer(mib: number, name = 'random.bin', gzip = false): LayerSpec {
  return { entries: [{ path: 'data/', type: 'dir' }, { path: `data/${name}`, content: randomBytes(mib * 1024 * 1024) }], gzip };
}

interface Built {
  config: Buffer;
  layers: { blob: Buffer; diffId: string; mediaType: string }[];
  manifest: Buffer;
  manifestMediaType: string;
}

export function buildImage(opts: PushOptions): Built {
  const mt = MT[opts.format ?? 'oci'];
  const layers = opts.layers.map((l) => {
    const tar = l.tar ?? buildTar(l.entries ?? []);
    const gz = l.gzip ?? true;
    return { blob: gz ? gzipSync(tar, { level: 1 }) : tar, diffId: digestOf(tar), mediaType: gz ? mt.layer : mt.layerPlain };
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: opts.architecture ?? 'amd64',
      os: opts.os ?? 'linux',
      created: '2024-01-01T00:00:00Z',
      config: opts.config ?? {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'gvisor-cri test' })),
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mt.manifest,
      config: { mediaType: mt.config, digest: digestOf(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: digestOf(l.blob), size: l.blob.length })),
    }),
  );
  return { config, layers, manifest, manifestMediaType: mt.manifest };
}

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A minimal registry client for pushing (token flow with push scope, or basic auth). */
class Pusher {
  private authorization?: string;
  private readonly ca?: Buffer;

  constructor(
    private readonly base: string,
    private readonly name: string,
    private readonly opts: { auth?: { username: string; password: string }; caFile?: string },
  ) {
    this.ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
  }

  private raw(method: string, url: string, headers: Record<string, string>, body?: Buffer): Promise<Res> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const req = (u.protocol === 'https:' ? https : http).request(u, { method, headers: body ? { ...headers, 'Content-Length': String(body.length) } : headers, ca: this.ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  async request(method: string, url: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Res> {
    const full = new URL(url, this.base).toString();
    const withAuth = (): Record<string, string> => (this.authorization ? { ...headers, Authorization: this.authorization } : headers);
    let res = await this.raw(method, full, withAuth(), body);
    if (res.status !== 401 || this.authorization) return res;
    const challenge = String(res.headers['www-authenticate'] ?? '');
    const basic = this.opts.auth ? `Basic ${Buffer.from(`${this.opts.auth.username}:${this.opts.auth.password}`).toString('base64')}` : undefined;
    if (/^basic/i.test(challenge)) {
      this.authorization = basic;
    } else {
      const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const realm = new URL(params.realm);
      realm.searchParams.set('service', params.service ?? '');
      realm.searchParams.set('scope', `repository:${this.name}:pull,push`);
      const t = await this.raw('GET', realm.toString(), basic ? { Authorization: basic } : {});
      if (t.status !== 200) throw new Error(`push ${this.name}: token server answered ${t.status}`);
      const doc = JSON.parse(t.body.toString()) as { token?: string; access_token?: string };
      this.authorization = `Bearer ${doc.token ?? doc.access_token}`;
    }
    res = await this.raw(method, full, withAuth(), body);
    return res;
  }

  async pushBlob(blob: Buffer): Promise<void> {
    const digest = digestOf(blob);
    const head = await this.request('HEAD', `/v2/${this.name}/blobs/${digest}`);
    if (head.status === 200) return;
    const start = await this.request('POST', `/v2/${this.name}/blobs/uploads/`);
    if (start.status !== 202) throw new Error(`push ${this.name}: starting upload answered ${start.status}: ${start.body.toString()}`);
    const location = new URL(String(start.headers.location), this.base);
    location.searchParams.set('digest', digest);
    const put = await this.request('PUT', location.toString(), { 'Content-Type': 'application/octet-stream' }, blob);
    if (put.status !== 201) throw new Error(`push ${this.name}: uploading ${digest} answered ${put.status}: ${put.body.toString()}`);
  }

  async pushManifest(reference: string, manifest: Buffer, mediaType: string): Promise<void> {
    const res = await this.request('PUT', `/v2/${this.name}/manifests/${reference}`, { 'Content-Type': mediaType }, manifest);
    if (res.status !== 201) throw new Error(`push ${this.name}: manifest ${reference} answered ${res.status}: ${res.body.toString()}`);
  }
}

/**
 * Builds an image from `opts` and pushes it as `name:tag` to the registry at
 * `registryUrl` (http://127.0.0.1:PORT or https://...). For a runnable
 * busybox image:
 *   pushTestImage(registry.url, 'test/busybox', { layers: [{ entries: busyboxEntries() }], config: { Cmd: ['sh'] } })
 */
export async function pushTestImage(registryUrl: string, name: string, opts: PushOptions): Promise<PushedImage> {
  const built = buildImage(opts);
  const pusher = new Pusher(registryUrl, name, opts);
  for (const l of built.layers) await pusher.pushBlob(l.blob);
  await pusher.pushBlob(built.config);
  const tag = opts.tag ?? 'latest';
  await pusher.pushManifest(tag, built.manifest, built.manifestMediaType);
  const host = new URL(registryUrl).host;
  const manifestDigest = digestOf(built.manifest);
  return {
    ref: `${host}/${name}:${tag}`,
    digestRef: `${host}/${name}@${manifestDigest}`,
    manifestDigest,
    manifestMediaType: built.manifestMediaType,
    manifestSize: built.manifest.length,
    configDigest: digestOf(built.config),
    layerDigests: built.layers.map((l) => digestOf(l.blob)),
    diffIds: built.layers.map((l) => l.diffId),
    size: built.config.length + built.layers.reduce((s, l) => s + l.blob.length, 0),
  };
}

/** Pushes a multi-arch index over images already pushed (by digest) to the same repository. */
export async function pushTestIndex(
  registryUrl: string,
  name: string,
  tag: string,
  entries: { image: PushedImage; os: string; architecture: string; variant?: string }[],
  opts: { format?: 'oci' | 'docker'; auth?: { username: string; password: string }; caFile?: string } = {},
): Promise<{ ref: string; digest: string }> {
  const mt = MT[opts.format ?? 'oci'];
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mt.index,
      manifests: entries.map((e) => ({
        mediaType: e.image.manifestMediaType,
        digest: e.image.manifestDigest,
        size: e.image.manifestSize,
        platform: { os: e.os, architecture: e.architecture, ...(e.variant ? { variant: e.variant } : {}) },
      })),
    }),
  );
  const pusher = new Pusher(registryUrl, name, opts);
  await pusher.pushManifest(tag, index, mt.index);
  return { ref: `${new URL(registryUrl).host}/${name}:${tag}`, digest: digestOf(index) };
}
