import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CriError } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import { ImageStore } from '../../image-store/index.js';
import { pushTestImage, type LayerSpec, type TarEntry } from '../helpers/image-builder.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';

let registry: TestRegistry;
let scratch: string;
const dirs: string[] = [];

before(async () => {
  registry = await startRegistry();
  scratch = await mkdtemp(join(tmpdir(), 'gvcri-escape-'));
  dirs.push(scratch);
});

after(async () => {
  await registry?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function openStore(): Promise<{ store: ImageStore; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-images-layers-'));
  dirs.push(dir);
  return { store: await ImageStore.open({ stateDir: dir, registries: {}, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger: silentLogger }), dir };
}

const good: LayerSpec = { entries: [{ path: 'etc/', type: 'dir' }, { path: 'etc/ok', content: 'fine' }] };

/** Pushes an image whose top layer is `evil` (over a harmless one) and checks the pull is refused cleanly. */
async function assertRefused(name: string, evil: TarEntry[], ...words: string[]): Promise<void> {
  const img = await pushTestImage(registry.url, `evil/${name}`, { layers: [good, { entries: evil }] });
  const { store, dir } = await openStore();
  await assert.rejects(store.pull(img.ref), (err: unknown) => {
    assert.ok(err instanceof CriError, String(err));
    assert.equal(err.code, status.FAILED_PRECONDITION, err.message);
    for (const w of [img.layerDigests[1], 'refused', ...words]) assert.ok(err.message.includes(w), `"${err.message}" lacks "${w}"`);
    return true;
  });
  assert.deepEqual(store.list(), []);
  assert.deepEqual(await readdir(join(dir, 'images/tmp')), [], 'temp snapshot removed');
  // Only the harmless lower layer's snapshot may exist; nothing of the evil one.
  assert.ok((await readdir(join(dir, 'images/snapshots'))).length <= 1);
  assert.deepEqual(await readdir(scratch), [], 'nothing written outside');
}

test('"../" escape is refused', async () => {
  await assertRefused('dotdot', [{ path: `../../../../../../../..${scratch}/pwned`, content: 'x' }], '".."');
  await assertRefused('dotdot-mid', [{ path: 'etc/../../pwned', content: 'x' }], '".."');
});

test('a refused layer of several read chunks stops the unpack cleanly', async () => {
  // The escape comes first and 3 MiB follow: the blob is still being fed to gunzip when the layer fails.
  await assertRefused('dotdot-big', [{ path: '../pwned', content: 'x' }, { path: 'big.bin', content: randomBytes(3 * 1024 * 1024) }], '".."');
});

test('absolute paths are refused', async () => {
  await assertRefused('absolute', [{ path: `${scratch}/pwned`, content: 'x' }], 'absolute');
});

test('writing through a symlink is refused', async () => {
  await assertRefused('symlink-out', [{ path: 'escape', type: 'symlink', linkpath: scratch }, { path: 'escape/pwned', content: 'x' }], 'symlink "escape"');
  await assertRefused('symlink-rel', [{ path: 'up', type: 'symlink', linkpath: '../../../../../../..' }, { path: `up${scratch}/pwned`, content: 'x' }], 'symlink');
});

test('hard links to outside are refused', async () => {
  await assertRefused('hardlink-out', [{ path: 'passwd', type: 'link', linkpath: '../../../../etc/passwd' }], '".."');
  await assertRefused('hardlink-abs', [{ path: 'passwd', type: 'link', linkpath: '/etc/passwd' }], 'absolute');
  await assertRefused('hardlink-via-symlink', [{ path: 'hostetc', type: 'symlink', linkpath: '/etc' }, { path: 'passwd', type: 'link', linkpath: 'hostetc/passwd' }], 'hostetc');
});

test('a symlink pointing outside is kept as a symlink (it is read inside the sandbox)', async () => {
  const img = await pushTestImage(registry.url, 'ok/symlink', { layers: [good, { entries: [{ path: 'etc/ok', type: 'symlink', linkpath: '/etc/passwd' }, { path: 'etc/ok2', content: 'fresh' }] }] });
  const { store } = await openStore();
  const image = await store.pull(img.ref);
  const root = await store.rootfs(image.id);
  assert.ok((await lstat(join(root, 'etc/ok'))).isSymbolicLink());
  assert.equal(await readFile(join(root, 'etc/ok2'), 'utf8'), 'fresh');
  // The file that the symlink replaced still exists in the lower snapshot.
  const snapshots = await readdir(join(root, '..'));
  assert.equal(snapshots.length, 2);
  const lower = snapshots.map((s) => join(root, '..', s)).find((p) => p !== root)!;
  assert.equal(await readFile(join(lower, 'etc/ok'), 'utf8'), 'fine');
});

test('a layer that is not a tar is refused; an uncompressed layer works', async () => {
  const junk = await pushTestImage(registry.url, 'evil/junk', { layers: [{ tar: Buffer.from('this is not a tar archive'.repeat(40)), gzip: true }] });
  const { store } = await openStore();
  await assert.rejects(store.pull(junk.ref), (err: unknown) => err instanceof CriError && err.code === status.FAILED_PRECONDITION && /tar/.test(err.message));
  const plain = await pushTestImage(registry.url, 'ok/plain', { layers: [{ entries: [{ path: 'f', content: 'plain' }], gzip: false }] });
  const image = await store.pull(plain.ref);
  assert.equal(await readFile(join(await store.rootfs(image.id), 'f'), 'utf8'), 'plain');
});
