import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync, gzipSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { encodeGrpcMessage, GrpcStatusError, MAX_MESSAGE, parseGrpcTimeout, RequestReader } from '../../cri-api/grpc-wire.js';

test('grpc-timeout: every unit, up to 8 digits; anything else is malformed', () => {
  assert.equal(parseGrpcTimeout('2H'), 7_200_000);
  assert.equal(parseGrpcTimeout('3M'), 180_000);
  assert.equal(parseGrpcTimeout('120S'), 120_000);
  assert.equal(parseGrpcTimeout('99999999m'), 99_999_999);
  assert.equal(parseGrpcTimeout('1500u'), 1.5);
  assert.equal(parseGrpcTimeout('2000000n'), 2);
  assert.equal(parseGrpcTimeout('0m'), 0);
  for (const bad of ['', 'S', '123456789S', '10s', '1.5S', '-1S', ' 1S', '18f6n']) assert.equal(parseGrpcTimeout(bad), undefined, bad);
});

test('grpc-message: printable ASCII as is, `%` and every other octet of the UTF-8 percent-encoded', () => {
  assert.equal(encodeGrpcMessage('container "x" not found: /run/a.sock'), 'container "x" not found: /run/a.sock');
  assert.equal(encodeGrpcMessage('100% done'), '100%25 done');
  assert.equal(encodeGrpcMessage('pod «ü»\n'), 'pod %C2%AB%C3%BC%C2%BB%0A');
  assert.equal(encodeGrpcMessage('🙂'), '%F0%9F%99%82');
  assert.equal(decodeURIComponent(encodeGrpcMessage('tête-à-tête 100%')), 'tête-à-tête 100%');
});

const prefixed = (body: Buffer, compressed = false): Buffer => {
  const p = Buffer.alloc(5);
  p[0] = compressed ? 1 : 0;
  p.writeUInt32BE(body.length, 1);
  return Buffer.concat([p, body]);
};
const statusOf = (fn: () => unknown): number => {
  try {
    fn();
  } catch (err) {
    if (err instanceof GrpcStatusError) return err.code;
    throw err;
  }
  return status.OK;
};

test('request reader: one message in any split; none, two, cut short or too large get the status grpc-go answers', () => {
  const body = Buffer.from('hello request');
  const whole = prefixed(body);
  for (const size of [1, 2, 5, 6, whole.length]) {
    const r = new RequestReader(undefined);
    for (let p = 0; p < whole.length; p += size) r.push(whole.subarray(p, p + size));
    assert.deepEqual(r.message(), body, `pieces of ${size}`);
  }
  assert.equal(statusOf(() => new RequestReader(undefined).message()), status.INTERNAL);
  const short = new RequestReader(undefined);
  short.push(whole.subarray(0, 8));
  assert.equal(statusOf(() => short.message()), status.INTERNAL);
  const two = new RequestReader(undefined);
  two.push(whole);
  assert.equal(statusOf(() => two.push(prefixed(body))), status.INTERNAL);
  const big = Buffer.alloc(5);
  big.writeUInt32BE(MAX_MESSAGE + 1, 1);
  assert.equal(statusOf(() => new RequestReader(undefined).push(big)), status.RESOURCE_EXHAUSTED);
});

test('request reader: gzip and deflate messages are inflated; a compressed flag without an encoding, or a bomb, is refused', () => {
  const body = Buffer.from('x'.repeat(1000));
  for (const [encoding, pack] of [['gzip', gzipSync], ['deflate', deflateSync]] as const) {
    const r = new RequestReader(encoding);
    r.push(prefixed(pack(body), true));
    assert.deepEqual(r.message(), body, encoding);
  }
  const identity = new RequestReader('identity');
  identity.push(prefixed(gzipSync(body), true));
  assert.equal(statusOf(() => identity.message()), status.INTERNAL);
  const bomb = new RequestReader('gzip');
  bomb.push(prefixed(gzipSync(Buffer.alloc(MAX_MESSAGE + 1)), true));
  assert.equal(statusOf(() => bomb.message()), status.RESOURCE_EXHAUSTED);
  const garbage = new RequestReader('gzip');
  garbage.push(prefixed(Buffer.from('not gzip'), true));
  assert.equal(statusOf(() => garbage.message()), status.INTERNAL);
});
