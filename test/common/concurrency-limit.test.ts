// The limit shared by the puller's downloads and the stats collector's runsc calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConcurrencyLimit } from '../../common/index.js';

/** A task that runs until released, recording when it started. */
function gate(started: number[], n: number): { task: () => Promise<number>; release: () => void } {
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  return { task: async () => (started.push(n), await done, n), release };
}

test('at most `limit` tasks run at once; the others start in order as slots free', async () => {
  const slots = new ConcurrencyLimit(2);
  const started: number[] = [];
  const gates = [0, 1, 2, 3].map((n) => gate(started, n));
  const results = gates.map((g) => slots.run(g.task));
  await Promise.resolve();
  assert.deepEqual(started, [0, 1]);
  gates[1].release();
  assert.equal(await results[1], 1);
  assert.deepEqual(started, [0, 1, 2]);
  gates[0].release();
  assert.equal(await results[0], 0);
  assert.deepEqual(started, [0, 1, 2, 3]);
  gates[2].release();
  gates[3].release();
  assert.deepEqual(await Promise.all(results), [0, 1, 2, 3]);
});

test('a failing task passes its error on and frees its slot', async () => {
  const slots = new ConcurrencyLimit(1);
  const failing = slots.run(async () => {
    throw new Error('boom');
  });
  const next = slots.run(async () => 'next ran');
  await assert.rejects(failing, /boom/);
  assert.equal(await next, 'next ran');
});
