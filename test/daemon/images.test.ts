// ImageService end to end: the real daemon over its socket, a real docker-registry on 127.0.0.1.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startDaemon, testConflist } from '../helpers/daemon.js';
import { startRegistry } from '../helpers/registry-server.js';
import { busyboxEntries, pushTestImage } from '../helpers/image-builder.js';

const registry = await startRegistry();
const daemon = await startDaemon({ conflist: testConflist(2) });
after(async () => {
  await daemon.cleanup();
  await registry.stop();
});

interface Image { id: string; repo_tags: string[]; repo_digests: string[]; size: string; uid: { value: string } | null; username: string }

const pushed = await pushTestImage(registry.url, 'e2e/busybox', {
  tag: '1.0',
  layers: [{ entries: busyboxEntries(['sh', 'true']) }, { entries: [{ path: 'etc/motd', content: 'hello\n' }] }],
  config: { Entrypoint: ['/bin/sh'], Cmd: ['-c', 'true'], User: '1000', Env: ['A=1'], WorkingDir: '/tmp' },
});

test('PullImage by tag, then ListImages, ImageStatus (verbose) and ImageFsInfo', async () => {
  const pulled = await daemon.call<{ image_ref: string }>('image', 'PullImage', { image: { image: pushed.ref } });
  assert.equal(pulled.image_ref, pushed.configDigest);
  const list = await daemon.call<{ images: Image[] }>('image', 'ListImages', { filter: { image: { image: pushed.ref } } });
  assert.equal(list.images.length, 1);
  assert.deepEqual(list.images[0]!.repo_tags, [pushed.ref]);
  assert.deepEqual(list.images[0]!.repo_digests, [pushed.digestRef]);
  const st = await daemon.call<{ image: Image; info: Record<string, string> }>('image', 'ImageStatus', { image: { image: pushed.ref }, verbose: true });
  assert.equal(st.image.id, pushed.configDigest);
  assert.equal(st.image.uid?.value, '1000');
  assert.ok(Number(st.image.size) > 0);
  assert.match(st.info.info!, /"WorkingDir":"\/tmp"/);
  const fs = await daemon.call<{ image_filesystems: { fs_id: { mountpoint: string }; used_bytes: { value: string } }[] }>('image', 'ImageFsInfo', {});
  assert.equal(fs.image_filesystems.length, 1);
  assert.ok(Number(fs.image_filesystems[0]!.used_bytes.value) > 0);
  assert.ok(fs.image_filesystems[0]!.fs_id.mountpoint.startsWith(daemon.stateDir));
  // The daemon builds snapshots in a directory ext4 spreads over block groups (image-store/top-dir.ts).
  assert.match(execFileSync('lsattr', ['-d', join(daemon.stateDir, 'images', 'tmp')], { encoding: 'utf8' }).split(' ')[0]!, /T/);
});

test('PullImage by digest and an unknown image status is empty, as kubelet expects', async () => {
  const pulled = await daemon.call<{ image_ref: string }>('image', 'PullImage', { image: { image: pushed.digestRef } });
  assert.equal(pulled.image_ref, pushed.configDigest);
  const st = await daemon.call<{ image: Image | null }>('image', 'ImageStatus', { image: { image: `${registry.host}/e2e/none:1` } });
  assert.equal(st.image, null);
});

test('bad references and missing images get clear statuses', async () => {
  await assert.rejects(daemon.call('image', 'PullImage', { image: { image: 'UPPER/Case::x' } }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.includes('UPPER/Case::x'));
  await assert.rejects(daemon.call('image', 'PullImage', { image: { image: `${registry.host}/e2e/missing:1` } }), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && e.details.includes('e2e/missing'));
  await assert.rejects(daemon.call('image', 'PullImage', { image: { image: '127.0.0.1:1/e2e/x:1' } }), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);
});

test('images survive a daemon restart; RemoveImage removes them and is idempotent', async () => {
  await daemon.stop();
  const again = await startDaemon({ reuse: daemon, conflist: testConflist(2) });
  try {
    const st = await again.call<{ image: Image | null }>('image', 'ImageStatus', { image: { image: pushed.ref } });
    assert.equal(st.image?.id, pushed.configDigest);
    await again.call('image', 'RemoveImage', { image: { image: pushed.configDigest } });
    const gone = await again.call<{ image: Image | null }>('image', 'ImageStatus', { image: { image: pushed.ref } });
    assert.equal(gone.image, null);
    await again.call('image', 'RemoveImage', { image: { image: pushed.configDigest } });
    const list = await again.call<{ images: Image[] }>('image', 'ListImages', {});
    assert.equal(list.images.length, 0);
  } finally {
    await again.stop();
  }
});
