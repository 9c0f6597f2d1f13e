import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { CriError } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import type { ImageSpec__Output } from '../../cri-api/generated/runtime/v1/ImageSpec.js';
import { ImageFsInfo, ImageStatus, ImageStore, ListImages, PullImage, RemoveImage } from '../../image-store/index.js';
import { busyboxEntries, pushTestImage, type PushedImage } from '../helpers/image-builder.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';

// The same loader options as the daemon, so the wire round trip below is the real one.
const proto = protoLoader.loadSync(fileURLToPath(new URL('../../../cri-api/proto/api.proto', import.meta.url)), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const service = proto['runtime.v1.ImageService'] as protoLoader.ServiceDefinition;

/** Serializes a response as grpc-js would and reads it back as kubelet would. */
function wire<T extends object>(rpc: string, res: T): T {
  const method = service[rpc];
  return method.responseDeserialize(method.responseSerialize(res)) as T;
}

const spec = (image: string): ImageSpec__Output => ({ image, annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' });

let registry: TestRegistry;
let store: ImageStore;
let stateDir: string;
let numeric: PushedImage;
let named: PushedImage;

before(async () => {
  registry = await startRegistry();
  stateDir = await mkdtemp(join(tmpdir(), 'gvcri-images-rpc-'));
  store = await ImageStore.open({ stateDir, registries: {}, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger: silentLogger });
  numeric = await pushTestImage(registry.url, 'rpc/numeric', { tag: 'v1', layers: [{ entries: busyboxEntries(['sh']) }], config: { User: '1000:1000', Cmd: ['sh'] } });
  named = await pushTestImage(registry.url, 'rpc/named', { tag: 'v1', layers: [{ entries: [{ path: 'f', content: 'x' }] }], config: { User: 'nobody' } });
});

after(async () => {
  await registry?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

test('PullImage returns the image id; ListImages and ImageStatus describe it', async () => {
  const pulled = wire('PullImage', await PullImage(store, { image: spec(numeric.ref), auth: null, sandbox_config: null }));
  assert.equal(pulled.image_ref, numeric.configDigest);
  await PullImage(store, { image: spec(named.ref), auth: { username: '', password: '', auth: '', server_address: '', identity_token: '', registry_token: '' }, sandbox_config: null });

  const all = wire('ListImages', await ListImages(store, { filter: null }));
  assert.deepEqual(all.images?.map((i) => i.id).sort(), [numeric.configDigest, named.configDigest].sort());
  const one = wire('ListImages', await ListImages(store, { filter: { image: spec(named.ref) } }));
  assert.deepEqual(one.images?.map((i) => i.id), [named.configDigest]);

  const st = wire('ImageStatus', await ImageStatus(store, { image: spec(numeric.ref), verbose: true }));
  assert.equal(st.image?.id, numeric.configDigest);
  assert.deepEqual(st.image?.repo_tags, [numeric.ref]);
  assert.deepEqual(st.image?.repo_digests, [numeric.digestRef]);
  assert.equal(st.image?.size, String(numeric.size));
  assert.deepEqual(st.image?.uid, { value: '1000' });
  assert.equal(st.image?.username, '');
  const info = JSON.parse(st.info?.info ?? '{}') as { imageSpec: { config: { Cmd: string[] } } };
  assert.deepEqual(info.imageSpec.config.Cmd, ['sh']);

  const byName = wire('ImageStatus', await ImageStatus(store, { image: spec(named.configDigest), verbose: false }));
  assert.equal(byName.image?.uid, null);
  assert.equal(byName.image?.username, 'nobody');
  assert.deepEqual(byName.info, {});

  const unknown = wire('ImageStatus', await ImageStatus(store, { image: spec('busybox:never-pulled'), verbose: false }));
  assert.equal(unknown.image, null);
});

test('RemoveImage removes (unknown is fine); ImageFsInfo reports usage', async () => {
  await RemoveImage(store, { image: spec(named.configDigest) });
  await RemoveImage(store, { image: spec(named.configDigest) });
  assert.equal(store.resolve(named.ref), undefined);
  const fs = wire('ImageFsInfo', await ImageFsInfo(store, {}));
  assert.equal(fs.image_filesystems?.length, 1);
  const usage = fs.image_filesystems![0];
  assert.equal(usage.fs_id?.mountpoint, join(stateDir, 'images'));
  assert.ok(Number(usage.used_bytes?.value) > 1_000_000, 'busybox is in there');
  assert.ok(Number(usage.inodes_used?.value) > 5);
  assert.ok(Math.abs(Number(BigInt(String(usage.timestamp)) / 1_000_000n) - Date.now()) < 60_000);
  assert.deepEqual(fs.container_filesystems, []);
});

test('empty image fields are INVALID_ARGUMENT', async () => {
  const invalid = (err: unknown): boolean => err instanceof CriError && err.code === status.INVALID_ARGUMENT && err.message.includes('image.image');
  await assert.rejects(PullImage(store, { image: null, auth: null, sandbox_config: null }), invalid);
  await assert.rejects(ImageStatus(store, { image: spec(''), verbose: false }), invalid);
  await assert.rejects(RemoveImage(store, { image: null }), invalid);
  await assert.rejects(PullImage(store, { image: spec('Not/Valid'), auth: null, sandbox_config: null }), (err: unknown) => err instanceof CriError && err.code === status.INVALID_ARGUMENT && err.message.includes('"Not/Valid"'));
});
