// ImageFsInfo does not walk the store on every call: the usage is walked again only after
// the store changed (a pull, a removal), so a file added behind the store's back is not
// seen until then.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../cri-api/logger.js';
import { ImageStore } from '../../image-store/index.js';
import { busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';

let registry: TestRegistry;
let dir: string;

before(async () => {
  registry = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gvcri-fsinfo-'));
});

after(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('image fs usage is walked again only after the store changed', async () => {
  const image = await pushTestImage(registry.url, 'fsinfo/app', { layers: [{ entries: busyboxEntries(['sh']) }], config: { Cmd: ['sh'] } });
  const store = await ImageStore.open({ stateDir: dir, registries: {}, maxConcurrentDownloads: 3, pullProgressTimeoutMs: 10_000, logger: silentLogger });
  const empty = await store.fsInfo();
  await store.pull(image.ref);
  const pulled = await store.fsInfo();
  assert.ok(pulled.usedBytes > empty.usedBytes + 100_000, `${pulled.usedBytes} after the pull, ${empty.usedBytes} before`);

  // Not a change the store made: the cached usage stands, shared by concurrent callers.
  await writeFile(join(dir, 'images', 'untracked'), Buffer.alloc(4 << 20, 1));
  const again = await Promise.all([store.fsInfo(), store.fsInfo(), store.fsInfo()]);
  for (const u of again) assert.deepEqual([u.usedBytes, u.inodesUsed], [pulled.usedBytes, pulled.inodesUsed]);

  // A removal changes the store: the next call walks it, and sees both changes.
  await store.remove(image.ref);
  const removed = await store.fsInfo();
  assert.ok(removed.usedBytes >= empty.usedBytes + (4 << 20), `${removed.usedBytes} after the removal`);
  assert.ok(removed.usedBytes < pulled.usedBytes + (4 << 20), `the image's ${pulled.usedBytes - empty.usedBytes} bytes are gone`);
  assert.ok(removed.inodesUsed > empty.inodesUsed && removed.inodesUsed < pulled.inodesUsed, `${removed.inodesUsed} inodes: the untracked file is counted, the image's are not`);
});
