import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { writeFileAtomic } from '../../common/index.js';
import { silentLogger } from '../../cri-api/logger.js';
import { RecordStore } from '../../runtime/records/store.js';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gvcri-records-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Rec {
  id: string;
  phase: string;
  exitCode: number;
  resources: { cpuShares: number; unified: Record<string, string> };
  reads: number;
}

test('concurrent writes of one record (exit, resource updates, status reads) leave it whole and as it is last', async () => {
  const storeDir = join(dir, 'containers');
  const store = new RecordStore<Rec>(storeDir, 'container', 'atomic');
  await store.load(silentLogger);
  const rec: Rec = { id: 'a'.repeat(64), phase: 'running', exitCode: 0, resources: { cpuShares: 2, unified: {} }, reads: 0 };
  await store.put(rec);
  // Payloads of very different lengths: an interleaved write would leave a long tail after a short head.
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 2000; i++) {
    if (i === 1000) {
      rec.phase = 'exited';
      rec.exitCode = 137;
      writes.push(store.put(rec));
    }
    rec.resources = { cpuShares: i, unified: i % 2 === 0 ? { 'memory.max': 'x'.repeat(i % 500) } : {} };
    writes.push(store.put(rec));
    rec.reads++;
  }
  await Promise.all(writes);
  assert.deepEqual(JSON.parse(await readFile(join(storeDir, `${rec.id}.json`), 'utf8')), rec);
  assert.deepEqual(await readdir(storeDir), [`${rec.id}.json`], 'no temp file left behind');

  // What a restarted daemon reads back.
  const reopened = new RecordStore<Rec>(storeDir, 'container', 'atomic');
  await reopened.load(silentLogger);
  assert.deepEqual(reopened.get(rec.id), rec);
});

test('a write that waited behind a delete does not bring the record back', async () => {
  const storeDir = join(dir, 'pods');
  const store = new RecordStore<Rec>(storeDir, 'pod sandbox', 'durable');
  await store.load(silentLogger);
  const rec: Rec = { id: 'b'.repeat(64), phase: 'ready', exitCode: 0, resources: { cpuShares: 0, unified: {} }, reads: 0 };
  const writes = [store.put(rec), store.put(rec), store.delete(rec.id)];
  await Promise.all(writes);
  assert.deepEqual(await readdir(storeDir), []);
  assert.equal(store.get(rec.id), undefined);
});

test('concurrent atomic writes of one file never share a temp file', async () => {
  const target = join(dir, 'shared.json');
  await Promise.all(Array.from({ length: 500 }, (_, i) => writeFileAtomic(target, JSON.stringify({ i, pad: 'p'.repeat(i * 7) }), { durability: i % 2 === 0 ? 'atomic' : 'durable' })));
  const got = JSON.parse(await readFile(target, 'utf8')) as { i: number; pad: string };
  assert.equal(got.pad.length, got.i * 7);
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('shared.json')), ['shared.json']);
});

test('an atomic write gives the file its mode whatever the umask, and a failed one leaves no temp file behind', async () => {
  const target = join(dir, 'moded.json');
  const old = process.umask(0o077);
  try {
    await writeFileAtomic(target, '{"a":1}', { durability: 'atomic', mode: 0o644 });
  } finally {
    process.umask(old);
  }
  assert.equal((await stat(target)).mode & 0o777, 0o644);
  assert.equal(await readFile(target, 'utf8'), '{"a":1}');
  // A directory in the way: the rename fails, the write rejects, and nothing of it is left.
  const blocked = join(dir, 'blocked');
  await mkdir(join(blocked, 'inside'), { recursive: true });
  await assert.rejects(writeFileAtomic(blocked, 'x', { durability: 'atomic' }));
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('blocked')), ['blocked']);
});
