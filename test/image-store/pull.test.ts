import { after, before, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CriError } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import { ImageStore, type ImageStoreOptions } from '../../image-store/index.js';
import { busyboxEntries, pushTestImage, pushTestIndex, randomLayer, type PushedImage } from '../helpers/image-builder.js';
import { registryBlobPath, startProxy, startRegistry, type TestProxy, type TestRegistry } from '../helpers/registry-server.js';

let registry: TestRegistry;
let proxy: TestProxy;
let base: PushedImage;
let app: PushedImage;
const tmpDirs: string[] = [];

const appConfig = { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hello'], Env: ['PATH=/bin', 'GREETING=hi'], WorkingDir: '/srv', User: '1000:1000', StopSignal: 'SIGINT', Labels: { a: 'b' } };

before(async () => {
  registry = await startRegistry();
  proxy = await startProxy(registry.url);
  const layer1 = {
    entries: [
      ...busyboxEntries(),
      { path: 'etc/doomed', content: 'deleted by layer 2' },
      { path: 'etc/kept', content: 'kept' },
      { path: 'opq/', type: 'dir' as const },
      { path: 'opq/lower-file', content: 'hidden by opaque dir' },
      { path: 'opq/sub/', type: 'dir' as const },
      { path: 'opq/sub/deep', content: 'hidden too' },
      { path: 'etc/replaced', content: 'old content' },
      { path: 'owned', content: 'x', uid: 1234, gid: 5678, mode: 0o4750 },
      { path: 'hard-a', content: 'shared inode' },
      { path: 'hard-b', type: 'link' as const, linkpath: 'hard-a' },
    ],
  };
  const layer2 = {
    entries: [
      { path: 'etc/.wh.doomed' },
      { path: 'opq/', type: 'dir' as const },
      { path: 'opq/new-file', content: 'from layer 2' },
      { path: 'opq/.wh..wh..opq' },
      { path: 'etc/replaced', content: 'new content' },
      { path: 'srv/', type: 'dir' as const, mode: 0o750, uid: 1000, gid: 1000 },
    ],
  };
  base = await pushTestImage(registry.url, 'test/base', { tag: 'v1', layers: [layer1] });
  app = await pushTestImage(registry.url, 'test/app', { tag: 'v1', layers: [layer1, layer2], config: appConfig, format: 'docker' });
});

after(async () => {
  await proxy?.stop();
  await registry?.stop();
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

async function openStore(extra: Partial<ImageStoreOptions> = {}, stateDir?: string): Promise<{ store: ImageStore; stateDir: string }> {
  const dir = stateDir ?? (await mkdtemp(join(tmpdir(), 'gvcri-images-')));
  tmpDirs.push(dir);
  const store = await ImageStore.open({ stateDir: dir, registries: {}, maxConcurrentDownloads: 3, pullProgressTimeoutMs: 10_000, logger: silentLogger, ...extra });
  return { store, stateDir: dir };
}

const isCode = (code: status, ...words: string[]) => (err: unknown): boolean => {
  assert.ok(err instanceof CriError, `not a CriError: ${String(err)}`);
  assert.equal(err.code, code, err.message);
  for (const w of words) assert.ok(err.message.includes(w), `"${err.message}" lacks "${w}"`);
  return true;
};

test('pull by tag unpacks layers with whiteouts, opaque dirs, links, ownership and config', async () => {
  const { store } = await openStore();
  const image = await store.pull(app.ref);
  assert.equal(image.id, app.configDigest);
  assert.deepEqual(image.repoTags, [`${registry.host}/test/app:v1`]);
  assert.deepEqual(image.repoDigests, [`${registry.host}/test/app@${app.manifestDigest}`]);
  assert.deepEqual(image.layers, app.diffIds);
  assert.equal(image.size, app.size);
  assert.deepEqual(image.config, appConfig);

  const root = await store.rootfs(image.id);
  assert.equal(await readlink(join(root, 'bin/sh')), 'busybox');
  assert.ok((await stat(join(root, 'bin/busybox'))).size > 100_000);
  await assert.rejects(lstat(join(root, 'etc/doomed')), { code: 'ENOENT' });
  assert.equal(await readFile(join(root, 'etc/kept'), 'utf8'), 'kept');
  assert.deepEqual((await readdir(join(root, 'opq'))).sort(), ['new-file']);
  assert.equal(await readFile(join(root, 'etc/replaced'), 'utf8'), 'new content');
  const owned = await stat(join(root, 'owned'));
  assert.equal(owned.uid, 1234);
  assert.equal(owned.gid, 5678);
  assert.equal(owned.mode & 0o7777, 0o4750);
  assert.equal((await stat(join(root, 'hard-a'))).ino, (await stat(join(root, 'hard-b'))).ino);
  const srv = await stat(join(root, 'srv'));
  assert.equal(srv.mode & 0o7777, 0o750);
  assert.equal(srv.uid, 1000);
  assert.equal((await stat(join(root, 'tmp'))).mode & 0o7777, 0o1777);

  // The lower snapshot (the base image's whole rootfs) is untouched by layer 2.
  const baseImage = await store.pull(base.ref);
  const lower = await store.rootfs(baseImage.id);
  assert.notEqual(lower, root);
  assert.equal(await readFile(join(lower, 'etc/replaced'), 'utf8'), 'old content');
  assert.equal(await readFile(join(lower, 'etc/doomed'), 'utf8'), 'deleted by layer 2');
  assert.deepEqual((await readdir(join(lower, 'opq'))).sort(), ['lower-file', 'sub']);
});

test('an image of many small files unpacks whole: every file its content, mode, owner and time, the lower layer untouched', async () => {
  const file = (layer: number, d: number, f: number): string => `layer ${layer} file ${d}/${f} `.repeat(1 + ((d * 7 + f) % 40));
  const when = new Date('2023-05-06T07:08:09Z');
  const lower = { entries: Array.from({ length: 20 }, (_, d) => [{ path: `many/d${d}/`, type: 'dir' as const }, ...Array.from({ length: 30 }, (_, f) => ({ path: `many/d${d}/f${f}`, content: file(1, d, f), mode: f % 2 ? 0o755 : 0o640, uid: f % 3, gid: 100 + (f % 5), mtime: when }))]).flat() };
  // The upper layer replaces every third file of the lower one and adds its own.
  const upper = { entries: Array.from({ length: 20 }, (_, d) => Array.from({ length: 30 }, (_, f) => ({ path: `many/d${d}/${f % 3 === 0 ? `f${f}` : `g${f}`}`, content: file(2, d, f), mode: 0o600, mtime: when }))).flat() };
  const lowerImg = await pushTestImage(registry.url, 'test/many-lower', { layers: [lower] });
  const img = await pushTestImage(registry.url, 'test/many', { layers: [lower, upper] });
  const { store, stateDir } = await openStore();
  // Snapshots are built in a directory marked for ext4 to spread new directories over block groups (top-dir.ts).
  assert.match(execFileSync('lsattr', ['-d', join(stateDir, 'images/tmp')], { encoding: 'utf8' }).split(' ')[0]!, /T/);
  const root = await store.rootfs((await store.pull(img.ref)).id);
  for (let d = 0; d < 20; d++) {
    assert.equal((await readdir(join(root, `many/d${d}`))).length, 50, `many/d${d}`);
    for (let f = 0; f < 30; f++) {
      const replaced = f % 3 === 0;
      const p = join(root, `many/d${d}/f${f}`);
      assert.equal(await readFile(p, 'utf8'), file(replaced ? 2 : 1, d, f), p);
      const st = await stat(p);
      assert.equal(st.mode & 0o7777, replaced ? 0o600 : f % 2 ? 0o755 : 0o640, p);
      assert.deepEqual([st.uid, st.gid], replaced ? [0, 0] : [f % 3, 100 + (f % 5)], p);
      assert.equal(st.mtime.getTime(), when.getTime(), p);
      if (!replaced) assert.equal(await readFile(join(root, `many/d${d}/g${f}`), 'utf8'), file(2, d, f));
    }
  }
  const below = await store.rootfs((await store.pull(lowerImg.ref)).id);
  assert.equal(await readFile(join(below, 'many/d19/f0'), 'utf8'), file(1, 19, 0), 'a replaced file is a new inode: the lower snapshot keeps its own');
  assert.equal((await readdir(join(below, 'many/d0'))).length, 30);
});

test('pull by digest, and by tag@digest', async () => {
  const { store } = await openStore();
  const image = await store.pull(app.digestRef);
  assert.equal(image.id, app.configDigest);
  assert.deepEqual(image.repoTags, []);
  assert.deepEqual(image.repoDigests, [app.digestRef]);
  assert.equal(store.resolve(app.digestRef)?.id, image.id);
  const again = await store.pull(`${registry.host}/test/app:v1@${app.manifestDigest}`);
  assert.equal(again.id, image.id);
});

test('pull through a multi-arch index picks linux/amd64 (or the configured platform)', async () => {
  const arm = await pushTestImage(registry.url, 'test/multi', { tag: 'arm64-only', layers: [{ entries: [{ path: 'arch', content: 'arm64' }] }], architecture: 'arm64' });
  const amd = await pushTestImage(registry.url, 'test/multi', { tag: 'amd64-only', layers: [{ entries: [{ path: 'arch', content: 'amd64' }] }] });
  const index = await pushTestIndex(registry.url, 'test/multi', 'v1', [
    { image: arm, os: 'linux', architecture: 'arm64', variant: 'v8' },
    { image: amd, os: 'linux', architecture: 'amd64' },
  ]);
  const { store } = await openStore({ platform: { os: 'linux', architecture: 'amd64' } });
  const image = await store.pull(index.ref);
  assert.equal(image.id, amd.configDigest);
  assert.deepEqual(image.repoDigests, [`${registry.host}/test/multi@${index.digest}`]);
  assert.equal(await readFile(join(await store.rootfs(image.id), 'arch'), 'utf8'), 'amd64');

  const { store: armStore } = await openStore({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  assert.equal((await armStore.pull(index.ref)).id, arm.configDigest);
  const { store: s390 } = await openStore({ platform: { os: 'linux', architecture: 's390x' } });
  await assert.rejects(s390.pull(index.ref), isCode(status.NOT_FOUND, 'linux/s390x', 'linux/amd64'));
});

test('re-pull fetches no blob; concurrent pulls share the downloads', async () => {
  const big = await pushTestImage(registry.url, 'test/big', { layers: [randomLayer(3, 'a.bin', true), randomLayer(12, 'b.bin'), { entries: busyboxEntries() }] });
  const { store } = await openStore({ registries: { [registry.host]: { mirrors: [proxy.url], insecure: false } } });
  proxy.requests.length = 0;
  const name = `${registry.host}/test/big:latest`;
  const [a, b, c] = await Promise.all([store.pull(name), store.pull(name), store.pull(`${registry.host}/test/big`)]);
  assert.equal(a.id, big.configDigest);
  assert.deepEqual(a.repoTags, [name], 'the name stays the registry\'s though the mirror served it');
  assert.deepEqual(a, b);
  assert.deepEqual(a, c);
  const blobGets = (): string[] => proxy.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).map((r) => r.path);
  assert.equal(blobGets().length, 4, JSON.stringify(blobGets()));
  assert.equal(new Set(blobGets()).size, 4);

  proxy.requests.length = 0;
  await store.pull(name);
  assert.deepEqual(blobGets(), []);
  assert.equal(proxy.requests.filter((r) => r.path.includes('/manifests/')).length, 1);
  proxy.requests.length = 0;
  await store.pull(big.digestRef);
  assert.deepEqual(proxy.requests, [], 'pull by digest of a stored image needs no request');
  const root = await store.rootfs(a.id);
  assert.equal((await stat(join(root, 'data/b.bin'))).size, 12 * 1024 * 1024);
});

test('a caller that gives up does not cancel the pull others wait for', async () => {
  const img = await pushTestImage(registry.url, 'test/abort', { layers: [randomLayer(4, 'r.bin', true)] });
  const { store } = await openStore();
  const quitter = new AbortController();
  const first = store.pull(img.ref, undefined, quitter.signal);
  const second = store.pull(img.ref);
  quitter.abort(new Error('caller went away'));
  await assert.rejects(first, /caller went away/);
  assert.equal((await second).id, img.configDigest);
  const alone = new AbortController();
  const lonely = store.pull(`${registry.host}/test/corrupt-never-pushed:x`, undefined, alone.signal);
  alone.abort(new Error('gone'));
  await assert.rejects(lonely, /gone/);
});

/** Flips a byte near the end of a blob in the registry's storage; the returned function puts the genuine bytes back. */
async function corruptBlob(digest: string): Promise<() => Promise<void>> {
  const data = registryBlobPath(registry, digest);
  const genuine = await readFile(data);
  const bad = Buffer.from(genuine);
  bad[bad.length - 5] ^= 0xff;
  await writeFile(data, bad);
  return () => writeFile(data, genuine);
}

test('a corrupted blob fails the pull and stores nothing', async () => {
  const img = await pushTestImage(registry.url, 'test/corrupt', { layers: [{ entries: [{ path: 'f', content: 'genuine content' }] }] });
  const restore = await corruptBlob(img.layerDigests[0]);
  const { store, stateDir } = await openStore();
  await assert.rejects(store.pull(img.ref), isCode(status.DATA_LOSS, img.layerDigests[0], 'test/corrupt'));
  assert.equal(store.list().length, 0);
  assert.equal(store.resolve(img.ref), undefined);
  assert.ok(!(await readdir(join(stateDir, 'images/blobs/sha256'))).includes(img.layerDigests[0].slice(7)));
  assert.deepEqual(await readdir(join(stateDir, 'images/snapshots')), []);
  assert.deepEqual(await readdir(join(stateDir, 'images/tmp')), []);
  await restore();
  assert.equal((await store.pull(img.ref)).id, img.configDigest);
});

test('a blob longer or shorter than its manifest says fails the pull as DATA_LOSS', async () => {
  const img = await pushTestImage(registry.url, 'test/resized', { layers: [randomLayer(1, 'r.bin', true)] });
  const data = registryBlobPath(registry, img.layerDigests[0]);
  const genuine = await readFile(data);
  const { store, stateDir } = await openStore();
  try {
    await writeFile(data, Buffer.concat([genuine, Buffer.alloc(4096, 1)]));
    await assert.rejects(store.pull(img.ref), isCode(status.DATA_LOSS, img.layerDigests[0], 'more than'));
    await writeFile(data, genuine.subarray(0, genuine.length - 4096));
    await assert.rejects(store.pull(img.ref), isCode(status.DATA_LOSS, img.layerDigests[0], 'the manifest declares'));
  } finally {
    await writeFile(data, genuine);
  }
  assert.deepEqual(await readdir(join(stateDir, 'images/tmp')), []);
  assert.equal((await store.pull(img.ref)).id, img.configDigest);
});

test('a corrupted upper layer fails the pull after the layer below unpacked early, and leaves no half-made snapshot', async () => {
  const img = await pushTestImage(registry.url, 'test/corrupt-upper', { layers: [{ entries: [{ path: 'low', content: 'bottom layer' }] }, randomLayer(2, 'up.bin', true)] });
  const restore = await corruptBlob(img.layerDigests[1]);
  const { store, stateDir } = await openStore();
  await assert.rejects(store.pull(img.ref), isCode(status.DATA_LOSS, img.layerDigests[1], 'test/corrupt-upper'));
  assert.equal(store.list().length, 0);
  assert.ok(!(await readdir(join(stateDir, 'images/blobs/sha256'))).includes(img.layerDigests[1].slice(7)));
  assert.ok((await readdir(join(stateDir, 'images/snapshots'))).length <= 1, 'at most the complete bottom snapshot');
  assert.deepEqual(await readdir(join(stateDir, 'images/tmp')), []);
  await restore();
  assert.equal((await store.pull(img.ref)).id, img.configDigest);
});

test('missing image is NOT_FOUND naming it; registry down is UNAVAILABLE', async () => {
  const { store } = await openStore();
  await assert.rejects(store.pull(`${registry.host}/test/nothing:here`), isCode(status.NOT_FOUND, `${registry.host}/test/nothing:here`));
  await assert.rejects(store.pull(`${registry.host}/test/app:nope`), isCode(status.NOT_FOUND, 'test/app:nope'));
  const down = await startRegistry();
  await down.stop();
  await assert.rejects(store.pull(`${down.host}/test/app:v1`), isCode(status.UNAVAILABLE, down.host, 'refused'));
  // A dead mirror is skipped: the registry itself serves.
  const { store: mirrored } = await openStore({ registries: { [registry.host]: { mirrors: [`http://${down.host}`], insecure: true } } });
  assert.equal((await mirrored.pull(base.ref)).id, base.configDigest);
});

test('a stalled download is aborted after pullProgressTimeoutMs', async (t) => {
  const net = await import('node:net');
  const server = net.createServer((sock) => sock.on('data', () => undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const { store } = await openStore({ pullProgressTimeoutMs: 300, registries: { [host]: { mirrors: [], insecure: true } } });
  const started = Date.now();
  await assert.rejects(store.pull(`${host}/stall/me:v1`), isCode(status.DEADLINE_EXCEEDED, host, 'no data'));
  assert.ok(Date.now() - started < 5000);
  server.close();
});

test('records survive reopening; remove untags, then removes and collects garbage', async () => {
  const { store, stateDir } = await openStore();
  const image = await store.pull(app.ref);
  const root = await store.rootfs(image.id);
  const reopened = (await openStore({}, stateDir)).store;
  assert.deepEqual(reopened.resolve(app.ref), image);
  assert.deepEqual(reopened.resolve(image.id), image);
  assert.deepEqual(reopened.resolve(image.id.slice(7, 19)), image);
  assert.equal(reopened.resolve(image.id.slice(7, 15)), undefined, 'prefix shorter than 12 is no id');
  assert.equal(await reopened.rootfs(image.id), root);

  // A second tag for the same image.
  await registryRetag('test/app', 'v1', 'other');
  await reopened.pull(`${registry.host}/test/app:other`);
  assert.deepEqual(reopened.resolve(image.id)?.repoTags, [`${registry.host}/test/app:v1`, `${registry.host}/test/app:other`]);
  await reopened.remove(`${registry.host}/test/app:other`);
  assert.deepEqual(reopened.resolve(image.id)?.repoTags, [`${registry.host}/test/app:v1`]);

  // A container holds the image: its snapshot survives RemoveImage until released.
  await reopened.acquire(image.id, 'container-1');
  await reopened.remove(image.id.slice(7, 30));
  assert.equal(reopened.resolve(image.id), undefined);
  assert.deepEqual(reopened.list(), []);
  assert.ok((await stat(join(root, 'bin/busybox'))).isFile());
  assert.deepEqual(await readdir(join(stateDir, 'images/blobs/sha256')), []);
  const again = (await openStore({}, stateDir)).store;
  assert.ok((await stat(join(root, 'bin/busybox'))).isFile(), 'holders are persisted');
  await again.release('container-1');
  await assert.rejects(stat(root), { code: 'ENOENT' });
  assert.deepEqual(await readdir(join(stateDir, 'images/snapshots')), []);
  await again.remove('unknown:image');
  await again.remove('sha256:' + 'f'.repeat(64));
});

test('holds live in holders.json; without a whole one, the state file\'s copy counts', async () => {
  const { store, stateDir } = await openStore();
  const image = await store.pull(app.ref);
  const root = await store.rootfs(image.id);
  await store.acquire(image.id, 'container-1');
  const holders = join(stateDir, 'images/holders.json');
  assert.deepEqual(Object.keys(JSON.parse(await readFile(holders, 'utf8')) as object), ['container-1']);
  // The hold came after the image's record: the state file (synced) still lists no holder.
  assert.deepEqual((JSON.parse(await readFile(join(stateDir, 'images/state.json'), 'utf8')) as { holders: object }).holders, {});

  // A store written before the holders file: its holders are in state.json only.
  await store.remove(image.id);
  assert.ok((await stat(join(root, 'bin/busybox'))).isFile(), 'held snapshot outlives RemoveImage');
  const state = JSON.parse(await readFile(join(stateDir, 'images/state.json'), 'utf8')) as { holders: Record<string, unknown> };
  assert.deepEqual(Object.keys(state.holders), ['container-1'], 'the durable write of the removal copied the holders');
  await rm(holders);
  const older = (await openStore({}, stateDir)).store;
  assert.deepEqual(older.holderIds(), ['container-1']);

  // A holders file a host crash tore: the state file's copy, not a daemon that cannot start.
  await writeFile(holders, '');
  const torn = (await openStore({}, stateDir)).store;
  assert.deepEqual(torn.holderIds(), ['container-1']);
  await torn.release('container-1');
  assert.deepEqual(JSON.parse(await readFile(holders, 'utf8')), {});
  await assert.rejects(stat(root), { code: 'ENOENT' });
});

test('interrupted pulls leave nothing visible after reopening', async () => {
  const { stateDir } = await openStore();
  await writeFile(join(stateDir, 'images/tmp/blob-leftover'), 'partial');
  await writeFile(join(stateDir, 'images/blobs/sha256', 'a'.repeat(64)), 'orphan');
  const { store } = await openStore({}, stateDir);
  assert.deepEqual(store.list(), []);
  assert.deepEqual(await readdir(join(stateDir, 'images/tmp')), []);
  assert.deepEqual(await readdir(join(stateDir, 'images/blobs/sha256')), []);
  const info = await store.fsInfo();
  assert.equal(info.mountpoint, join(stateDir, 'images'));
  assert.ok(info.usedBytes > 0 && info.inodesUsed > 0 && info.timestampNs > 0n);
});

/** Tags an existing manifest again (PUT the same bytes under a new tag). */
async function registryRetag(name: string, from: string, to: string): Promise<void> {
  const res = await fetch(`${registry.url}/v2/${name}/manifests/${from}`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' } });
  const body = Buffer.from(await res.arrayBuffer());
  const put = await fetch(`${registry.url}/v2/${name}/manifests/${to}`, { method: 'PUT', headers: { 'Content-Type': res.headers.get('content-type') ?? '' }, body });
  assert.equal(put.status, 201);
}
