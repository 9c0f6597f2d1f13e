import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { ResizeDecoder, ResizeQueue, parseTerminalSize } from '../../stream/resize.js';
import { legacyStatus, v4Status } from '../../stream/status.js';
import { TokenCache } from '../../stream/tokens.js';

describe('resize decoding', () => {
  it('cuts concatenated objects split anywhere', () => {
    const text = '{"Width":80,"Height":24}{"width":120, "HEIGHT":40}\n{"Width":1,"Height":2}';
    for (let cut = 1; cut < text.length; cut++) {
      const d = new ResizeDecoder();
      const sizes = [...d.push(text.slice(0, cut)), ...d.push(text.slice(cut))];
      assert.deepEqual(sizes, [{ width: 80, height: 24 }, { width: 120, height: 40 }, { width: 1, height: 2 }], `cut at ${cut}`);
    }
  });

  it('rejects non-objects and out-of-range sizes', () => {
    assert.throws(() => new ResizeDecoder().push('[1,2]'));
    assert.equal(parseTerminalSize('{"Width":70000,"Height":1}'), undefined);
    assert.equal(parseTerminalSize('{"Width":-1,"Height":1}'), undefined);
  });

  it('queues sizes for a late reader and ends', async () => {
    const q = new ResizeQueue();
    q.push({ width: 1, height: 2 });
    q.push({ width: 3, height: 4 });
    setTimeout(() => { q.push({ width: 5, height: 6 }); q.end(); }, 10);
    const seen = [];
    for await (const s of q) seen.push(s);
    assert.deepEqual(seen, [{ width: 1, height: 2 }, { width: 3, height: 4 }, { width: 5, height: 6 }]);
  });
});

describe('status documents', () => {
  it('writes the v4 shapes kubectl parses', () => {
    assert.equal(v4Status({ kind: 'success' }).toString(), '{"metadata":{},"status":"Success"}');
    const failure = JSON.parse(v4Status({ kind: 'exit', exitCode: 7, cmd: ['sh', '-c', 'exit 7'] }).toString());
    assert.equal(failure.status, 'Failure');
    assert.equal(failure.reason, 'NonZeroExitCode');
    assert.deepEqual(failure.details, { causes: [{ reason: 'ExitCode', message: '7' }] });
    assert.match(failure.message, /^command terminated with non-zero exit code: /);
    const internal = JSON.parse(v4Status({ kind: 'error', message: 'boom' }).toString());
    assert.equal(internal.code, 500);
    assert.equal(internal.reason, 'InternalError');
    assert.equal(internal.message, 'Internal error occurred: boom');
    assert.equal(legacyStatus({ kind: 'success' }), undefined);
    assert.equal(legacyStatus({ kind: 'error', message: 'boom' })?.toString(), 'boom');
  });
});

describe('token cache', () => {
  const exec = { kind: 'exec' as const, req: { containerId: 'c', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false } };

  it('hands out unguessable single-use tokens', () => {
    const cache = new TokenCache(60_000, 10);
    const a = cache.insert(exec);
    const b = cache.insert(exec);
    assert.notEqual(a, b);
    assert.match(a, /^[A-Za-z0-9_-]{32}$/);
    assert.deepEqual(cache.consume(a, 'exec'), exec);
    assert.equal(cache.consume(a, 'exec'), undefined);
    // A wrong-kind use still burns the token.
    assert.equal(cache.consume(b, 'attach'), undefined);
    assert.equal(cache.consume(b, 'exec'), undefined);
  });

  it('expires tokens and bounds how many are pending', () => {
    let now = 1000;
    const cache = new TokenCache(100, 2, () => now);
    const a = cache.insert(exec);
    cache.insert(exec);
    assert.throws(() => cache.insert(exec), (e: unknown) => e instanceof CriError && e.code === GrpcStatus.RESOURCE_EXHAUSTED);
    now += 100;
    assert.equal(cache.consume(a, 'exec'), undefined);
    cache.insert(exec);
    assert.equal(cache.size, 1);
  });
});
