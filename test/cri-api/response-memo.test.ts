import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResponseMemo, sameMessage } from '../../cri-api/response-memo.js';

/** A serializer that counts its calls; JSON stands in for protobuf. */
function counting(): { serialize: (res: unknown) => Buffer; calls: () => number } {
  let n = 0;
  return {
    serialize: (res) => {
      n++;
      return Buffer.from(JSON.stringify(res));
    },
    calls: () => n,
  };
}

const req = (s: string): Buffer => Buffer.from(s);

test('ResponseMemo: an equal answer to the same request is sent as the kept bytes; a different one is encoded', () => {
  const s = counting();
  const memo = new ResponseMemo(s.serialize);
  const first = memo.encode(req('a'), { status: { id: 'a', state: 'CONTAINER_RUNNING', labels: { k: 'v' } } });
  const again = memo.encode(req('a'), { status: { id: 'a', state: 'CONTAINER_RUNNING', labels: { k: 'v' } } });
  assert.equal(again, first);
  assert.equal(s.calls(), 1);
  const exited = memo.encode(req('a'), { status: { id: 'a', state: 'CONTAINER_EXITED', labels: { k: 'v' } } });
  assert.deepEqual(JSON.parse(exited.toString()), { status: { id: 'a', state: 'CONTAINER_EXITED', labels: { k: 'v' } } });
  assert.equal(s.calls(), 2);
  // Another request keeps its own answer.
  memo.encode(req('b'), { status: { id: 'b' } });
  assert.equal(s.calls(), 3);
  assert.equal(memo.encode(req('a'), { status: { id: 'a', state: 'CONTAINER_EXITED', labels: { k: 'v' } } }), exited);
  assert.equal(s.calls(), 3);
});

test('ResponseMemo: an answer sharing an object that was changed in place since is encoded again', () => {
  const s = counting();
  const memo = new ResponseMemo(s.serialize);
  const record = { labels: { k: 'v' } as Record<string, string> };
  memo.encode(req('a'), { labels: record.labels });
  record.labels.k = 'changed';
  const bytes = memo.encode(req('a'), { labels: record.labels });
  assert.deepEqual(JSON.parse(bytes.toString()), { labels: { k: 'changed' } });
  assert.equal(s.calls(), 2);
});

test('ResponseMemo: holds at most maxEntries requests, the oldest going first', () => {
  const s = counting();
  const memo = new ResponseMemo(s.serialize, 2);
  memo.encode(req('a'), { x: 1 });
  memo.encode(req('b'), { x: 2 });
  memo.encode(req('c'), { x: 3 });
  assert.equal(s.calls(), 3);
  memo.encode(req('c'), { x: 3 });
  memo.encode(req('b'), { x: 2 });
  assert.equal(s.calls(), 3);
  memo.encode(req('a'), { x: 1 });
  assert.equal(s.calls(), 4);
});

test('sameMessage: plain values, nesting, arrays, bytes, missing against undefined fields', () => {
  assert.ok(sameMessage({ a: [1, { b: 'x' }], c: true, d: Buffer.from('hi') }, { c: true, a: [1, { b: 'x' }], d: new Uint8Array([0x68, 0x69]) }));
  assert.ok(!sameMessage({ a: [1, 2] }, { a: [1, 2, 3] }));
  assert.ok(!sameMessage({ a: [1, 2] }, { a: { 0: 1, 1: 2 } }));
  assert.ok(!sameMessage({ a: '1' }, { a: 1 }));
  assert.ok(!sameMessage({ a: Buffer.from('hi') }, { a: Buffer.from('ho') }));
  assert.ok(!sameMessage({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!sameMessage({ a: 1, b: undefined }, { a: 1 }));
  assert.ok(!sameMessage({ a: null }, { a: {} }));
  assert.ok(!sameMessage({ n: NaN }, { n: NaN }));
});
