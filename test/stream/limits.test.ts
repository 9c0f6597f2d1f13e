// Bounds on what a streaming client can make the daemon hold: sessions open
// at once, and the memory and CPU one SPDY header block may cost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { SPDY3_DICTIONARY } from '../../stream/spdy/dictionary.js';
import { SpdyProtocolError } from '../../stream/spdy/frames.js';
import { HeaderDecompressor } from '../../stream/spdy/header-compression.js';
import type { StreamBackend } from '../../stream/index.js';
import { isUpgrade, parseStatus, spdyExec, spdyUpgrade, wsExec, KUBECTL_EXEC_PROTOCOLS } from '../helpers/stream-client.js';
import { startTestServer } from '../helpers/stream-server.js';

const MiB = 1024 * 1024;

/** Execs that run until `release()`; `started` counts those the backend was asked for. */
function gatedBackend(): { backend: StreamBackend; started: () => number; release: () => void } {
  let count = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const backend: StreamBackend = {
    async exec(_req, io) {
      count++;
      await gate;
      io.stdout?.end('done\n');
      return { exitCode: 0 };
    },
    attach: () => Promise.reject(new Error('not used')),
    portForward: () => Promise.reject(new Error('not used')),
  };
  return { backend, started: () => count, release: () => open() };
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('streaming session limit', () => {
  it('refuses a session over max-stream-sessions with 429 naming the limit, keeps its token for a retry', async (t) => {
    const { backend, started, release } = gatedBackend();
    const server = await startTestServer(t, backend, { maxSessions: 2 });
    const url = (): string => server.getExecUrl({ containerId: 'c1', cmd: ['x'], tty: false, stdin: false, stdout: true, stderr: false });
    const first = [spdyExec(url(), {}), wsExec(url(), {}, 'v5.channel.k8s.io')];
    await until('two sessions running', () => started() === 2);

    const third = url();
    for (const attempt of ['SPDY', 'WebSocket']) {
      const reply = await spdyUpgrade(third, { protocols: KUBECTL_EXEC_PROTOCOLS, ...(attempt === 'WebSocket' && { headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } }) });
      assert.ok(!isUpgrade(reply), `${attempt}: upgraded past the limit`);
      assert.equal(reply.statusCode, 429);
      assert.match(reply.body, /too many streaming sessions: 2 open, the limit is 2 \(max-stream-sessions\)/);
      assert.equal(reply.headers['retry-after'], '1');
    }
    assert.equal(started(), 2, 'the refused session ran nothing');

    release();
    for (const r of await Promise.all(first)) assert.equal(parseStatus(r).status, 'Success');
    // Sessions end a moment after their clients do: retry with the same token until one is free.
    let result;
    await until('a free session', async () => {
      try {
        result = await spdyExec(third, {});
        return true;
      } catch (err) {
        if (!/HTTP 429/.test(String(err))) throw err;
        return false;
      }
    });
    assert.equal(result!.stdout.toString(), 'done\n');
  });
});

describe('SPDY header decompression limit', () => {
  it('stops inflating a header-block bomb at the 1 MiB cap instead of inflating the rest', async () => {
    // A peer's deflate context, as a SPDY client keeps one. Once its window is
    // all zeros, every further MiB of zeros compresses to the same bytes, so a
    // 4 GiB bomb is a prefix plus one chunk repeated.
    const deflate = zlib.createDeflate({ level: 9, dictionary: SPDY3_DICTIONARY });
    const out: Buffer[] = [];
    deflate.on('data', (c: Buffer) => out.push(c));
    const flushMiB = async (): Promise<Buffer> => {
      await new Promise<void>((r) => deflate.write(Buffer.alloc(MiB), () => r()));
      await new Promise<void>((r) => deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => r()));
      return Buffer.concat(out.splice(0));
    };
    const prefix = await flushMiB();
    const chunk = await flushMiB();
    assert.deepEqual(await flushMiB(), chunk, 'zero blocks compress alike');
    deflate.close();
    const bomb = Buffer.concat([prefix, ...Array.from({ length: 4095 }, () => chunk)]);
    assert.ok(bomb.length < 8 * MiB, `the bomb is ${bomb.length} bytes`);

    const d = new HeaderDecompressor();
    const cpu = process.cpuUsage();
    const started = Date.now();
    // Inflating all 4 GiB takes tens of seconds; stopping at the cap, milliseconds.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still inflating after 10 s')), 10_000)));
    try {
      await assert.rejects(Promise.race([d.decompress(bomb), deadline]), (err: unknown) => err instanceof SpdyProtocolError && /more than the 1048576-byte limit/.test(err.message));
    } finally {
      clearTimeout(timer);
    }
    const used = process.cpuUsage(cpu);
    assert.ok(used.user + used.system < 5_000_000, `${(used.user + used.system) / 1000} ms of CPU, ${Date.now() - started} ms`);
    // The connection's context is dead: later blocks fail at once instead of hanging.
    await assert.rejects(d.decompress(chunk), SpdyProtocolError);
    d.close();
  });
});
