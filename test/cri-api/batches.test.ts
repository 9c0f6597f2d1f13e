import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sendInBatches } from '../../cri-api/batches.js';

async function batches<T>(items: T[]): Promise<T[][]> {
  const out: T[][] = [];
  await sendInBatches(items, (b) => b, async (b) => void out.push(b));
  return out;
}

test('sendInBatches: one message for a short list, one empty message for none', async () => {
  assert.deepEqual(await batches([1, 2, 3]), [[1, 2, 3]]);
  assert.deepEqual(await batches([]), [[]]);
});

test('sendInBatches: splits by count (500) and by size (1 MiB of JSON), keeping order', async () => {
  const many = Array.from({ length: 1201 }, (_, i) => i);
  const byCount = await batches(many);
  assert.deepEqual(byCount.map((b) => b.length), [500, 500, 201]);
  assert.deepEqual(byCount.flat(), many);
  const big = Array.from({ length: 5 }, (_, i) => ({ i, pad: 'x'.repeat(400 * 1024) }));
  const bySize = await batches(big);
  assert.deepEqual(bySize.map((b) => b.map((x) => x.i)), [[0, 1], [2, 3], [4]]);
  // One item larger than the bound still goes out, alone.
  assert.deepEqual((await batches([{ pad: 'y'.repeat(2 * 1024 * 1024) }])).length, 1);
});
