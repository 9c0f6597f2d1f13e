// What one image may cost the node: manifests and configs are capped at
// 4 MiB, layer count and unpacked size by options; an image over a limit
// fails with RESOURCE_EXHAUSTED naming it, and leaves nothing behind.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { CriError } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import { ImageStore } from '../../image-store/index.js';
import { DEFAULT_IMAGE_LIMITS, setImageLimits } from '../../image-store/manifest.js';
import { pushTestImage } from '../helpers/image-builder.js';
import { startProxy, startRegistry, type TestProxy, type TestRegistry } from '../helpers/registry-server.js';

const MiB = 1024 * 1024;
let registry: TestRegistry;
let proxy: TestProxy;
const dirs: string[] = [];

before(async () => {
  registry = await startRegistry();
  proxy = await startProxy(registry.url);
});

afterEach(() => setImageLimits(DEFAULT_IMAGE_LIMITS));

after(async () => {
  await proxy?.stop();
  await registry?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function openStore(): Promise<{ store: ImageStore; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-images-limits-'));
  dirs.push(dir);
  return { store: await ImageStore.open({ stateDir: dir, registries: {}, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger: silentLogger }), dir };
}

const isExhausted = (...words: string[]) => (err: unknown): boolean => {
  assert.ok(err instanceof CriError, String(err));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED, err.message);
  for (const w of words) assert.ok(err.message.includes(w), `"${err.message}" lacks "${w}"`);
  return true;
};

async function assertNothingStored(store: ImageStore, dir: string): Promise<void> {
  assert.deepEqual(store.list(), []);
  assert.deepEqual(await readdir(join(dir, 'images/snapshots')), [], 'no snapshot');
  assert.deepEqual(await readdir(join(dir, 'images/tmp')), [], 'no temp file');
}

/** A loopback registry front that answers every manifest request with `manifest` (optionally without Content-Length) and records blob requests. */
async function startManifestServer(manifest: Buffer, chunked: boolean): Promise<{ host: string; blobRequests: string[]; close(): Promise<void> }> {
  const blobRequests: string[] = [];
  const server = http.createServer((req, res) => {
    if (req.url?.includes('/blobs/')) {
      blobRequests.push(req.url);
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string | number> = { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' };
    if (!chunked) headers['Content-Length'] = manifest.length;
    res.writeHead(200, headers);
    // Sent in pieces: the client must stop reading at the cap, not after the whole body.
    for (let i = 0; i < manifest.length; i += 64 * 1024) res.write(manifest.subarray(i, i + 64 * 1024));
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    blobRequests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const digest = (c: string): string => `sha256:${c.repeat(64)}`;

test('a manifest over 4 MiB is refused, with or without Content-Length', async () => {
  const padding = 'x'.repeat(5 * MiB);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { digest: digest('a'), size: 2 }, layers: [], annotations: { padding } }));
  for (const chunked of [false, true]) {
    const server = await startManifestServer(manifest, chunked);
    try {
      const { store, dir } = await openStore();
      await assert.rejects(store.pull(`${server.host}/big/manifest:latest`), isExhausted('manifest', `${4 * MiB}-byte limit`));
      await assertNothingStored(store, dir);
      assert.deepEqual(await readdir(join(dir, 'images/blobs/sha256')), []);
    } finally {
      await server.close();
    }
  }
});

test('an image config declared over 4 MiB is refused before it is downloaded', async () => {
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest('b'), size: 64 * MiB },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digest('c'), size: 10 }],
  }));
  const server = await startManifestServer(manifest, false);
  try {
    const { store, dir } = await openStore();
    await assert.rejects(store.pull(`${server.host}/big/config:latest`), isExhausted('image config', digest('b'), `${4 * MiB}-byte limit`));
    assert.deepEqual(server.blobRequests, [], 'no blob was requested');
    await assertNothingStored(store, dir);
  } finally {
    await server.close();
  }
});

test('an image with more layers than image-max-layers is refused before any download', async () => {
  const layers = [1, 2, 3].map((i) => ({ entries: [{ path: `f${i}`, content: String(i) }] }));
  const img = await pushTestImage(proxy.url, 'limits/layers', { layers });
  setImageLimits({ ...DEFAULT_IMAGE_LIMITS, maxLayers: 2 });
  proxy.requests.length = 0;
  const { store, dir } = await openStore();
  await assert.rejects(store.pull(img.ref), isExhausted('3 layers', 'limit of 2', 'image-max-layers'));
  assert.deepEqual(proxy.requests.filter((r) => r.path.includes('/blobs/')), [], 'no blob was requested');
  await assertNothingStored(store, dir);
  setImageLimits({ ...DEFAULT_IMAGE_LIMITS, maxLayers: 3 });
  assert.equal((await store.pull(img.ref)).id, img.configDigest, 'at the limit it pulls');
});

test('a layer that unpacks past image-max-unpacked-mib (a gzip bomb) fails and leaves no snapshot', async () => {
  // 64 MiB of zeros gzip to about 64 KiB: the unpacked size, not the download, is what the limit bounds.
  const bomb = await pushTestImage(registry.url, 'limits/bomb', { layers: [{ entries: [{ path: 'ok', content: 'fine' }] }, { entries: [{ path: 'zeros', content: Buffer.alloc(64 * MiB) }] }] });
  setImageLimits({ ...DEFAULT_IMAGE_LIMITS, maxUnpackedBytes: 8 * MiB });
  const { store, dir } = await openStore();
  await assert.rejects(store.pull(bomb.ref), isExhausted(bomb.layerDigests[1]!, `more than ${8 * MiB} bytes`, 'image-max-unpacked-mib 8'));
  assert.deepEqual(store.list(), []);
  assert.deepEqual(await readdir(join(dir, 'images/tmp')), [], 'the half-unpacked snapshot is gone');
  assert.ok((await readdir(join(dir, 'images/snapshots'))).length <= 1, 'only the harmless lower layer may be unpacked');
  assert.ok(gzipSync(Buffer.alloc(MiB)).length < 8 * 1024, 'sanity: zeros compress well');
});

test('image-max-unpacked-mib bounds the whole image: layers each under it but over it together are refused, leaving no snapshot or blob', async () => {
  const layers = [1, 2, 3].map((i) => ({ entries: [{ path: `part${i}`, content: Buffer.alloc(3 * MiB, i) }] }));
  const img = await pushTestImage(registry.url, 'limits/sum', { layers });
  setImageLimits({ ...DEFAULT_IMAGE_LIMITS, maxUnpackedBytes: 8 * MiB });
  const { store, dir } = await openStore();
  await assert.rejects(store.pull(img.ref), isExhausted('image unpacks to more than', `${8 * MiB} bytes`, 'the limit per image', 'image-max-unpacked-mib 8'));
  await assertNothingStored(store, dir);
  const blobs = await readdir(join(dir, 'images/blobs'), { recursive: true, withFileTypes: true });
  assert.deepEqual(blobs.filter((e) => e.isFile()).map((e) => e.name), [], 'no blob of the refused image');
  setImageLimits({ ...DEFAULT_IMAGE_LIMITS, maxUnpackedBytes: 10 * MiB });
  assert.equal((await store.pull(img.ref)).id, img.configDigest, 'under the limit in all it pulls');
});
