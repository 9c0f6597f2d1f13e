import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CriLogWriter, rfc3339Nano } from '../../runtime/logs/cri-log.js';

test('rfc3339Nano trims trailing zeros like Go', () => {
  assert.equal(rfc3339Nano(1_700_000_000_123_450_000n), '2023-11-14T22:13:20.12345Z');
  assert.equal(rfc3339Nano(1_700_000_000_000_000_000n), '2023-11-14T22:13:20Z');
});

test('lines, long-line split, partial tail, reopen after rotation', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gvrt-crilog-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, '0.log');
  const w = new CriLogWriter(path, { maxLineBytes: 4, now: () => 1_700_000_000_000_000_001n });
  await w.open();
  w.write('stdout', Buffer.from('ab\ncdefgh'));
  w.write('stderr', Buffer.from('e\n'));
  w.write('stdout', Buffer.from('ij\nkl'));
  await w.flush();
  await rename(path, `${path}.1`);
  await w.reopen();
  w.write('stdout', Buffer.from('\nz'));
  await w.close();
  const ts = '2023-11-14T22:13:20.000000001Z';
  assert.equal(await readFile(`${path}.1`, 'utf8'), [`${ts} stdout F ab`, `${ts} stdout P cdef`, `${ts} stderr F e`, `${ts} stdout F ghij`, ''].join('\n'));
  assert.equal(await readFile(path, 'utf8'), [`${ts} stdout F kl`, `${ts} stdout P z`, ''].join('\n'));
});

test('a writer far behind drops lines instead of growing without bound', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gvrt-crilog-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const w = new CriLogWriter(join(dir, 'x.log'), { maxBufferedBytes: 1000 });
  await w.open();
  for (let i = 0; i < 100; i++) w.write('stdout', Buffer.from(`${'x'.repeat(100)}\n`));
  assert.ok(w.dropped > 0);
  await w.close();
});
