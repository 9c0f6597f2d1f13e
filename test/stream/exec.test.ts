import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { HostBackend } from '../helpers/stream-host-backend.js';
import { exitCodeOf, isUpgrade, parseStatus, spdyExec, spdyUpgrade, wsExec, type ExecClientOptions, type ExecClientResult } from '../helpers/stream-client.js';
import { startTestServer } from '../helpers/stream-server.js';
import type { StreamServer } from '../../stream/index.js';

const base = { containerId: 'c1', tty: false, stdin: false, stdout: true, stderr: true };

type Transport = { name: string; run: (url: string, opts: ExecClientOptions) => Promise<ExecClientResult> };
const transports: Transport[] = [
  { name: 'SPDY v4', run: (url, opts) => spdyExec(url, opts) },
  { name: 'WebSocket v4', run: (url, opts) => wsExec(url, opts, 'v4.channel.k8s.io') },
  { name: 'WebSocket v4 base64', run: (url, opts) => wsExec(url, opts, 'v4.base64.channel.k8s.io') },
  { name: 'WebSocket v5', run: (url, opts) => wsExec(url, opts, 'v5.channel.k8s.io') },
];

function execUrl(server: StreamServer, cmd: string[], over: Partial<typeof base> = {}): string {
  return server.getExecUrl({ ...base, cmd, ...over });
}

for (const tr of transports) {
  describe(`exec over ${tr.name}`, () => {
    it('reports exit code 7 as NonZeroExitCode with stdout and stderr separate', async (t) => {
      const server = await startTestServer(t, new HostBackend());
      const r = await tr.run(execUrl(server, ['sh', '-c', 'echo out; echo err >&2; exit 7']), { stderr: true });
      assert.equal(r.stdout.toString(), 'out\n');
      assert.equal(r.stderr.toString(), 'err\n');
      const status = parseStatus(r);
      assert.equal(status.status, 'Failure');
      assert.equal(status.reason, 'NonZeroExitCode');
      assert.equal(exitCodeOf(status), 7);
    });

    it('reports success and a backend failure as InternalError', async (t) => {
      const server = await startTestServer(t, new HostBackend());
      const ok = await tr.run(execUrl(server, ['true']), { stderr: true });
      assert.deepEqual(parseStatus(ok), { metadata: {}, status: 'Success' });
      const bad = parseStatus(await tr.run(execUrl(server, ['/nonexistent/cmd']), { stderr: true }));
      assert.equal(bad.reason, 'InternalError');
      assert.equal(bad.code, 500);
      assert.match(bad.message ?? '', /exec in container c1: running \/nonexistent\/cmd/);
    });

    // Without v5's close message a WebSocket client cannot signal stdin EOF, so `cat` would never end.
    if (tr.name !== 'WebSocket v4' && tr.name !== 'WebSocket v4 base64') {
      it('round-trips 10 MiB through cat and ends on stdin EOF', async (t) => {
        const server = await startTestServer(t, new HostBackend());
        const input = randomBytes(10 * 1024 * 1024);
        const r = await tr.run(execUrl(server, ['cat'], { stdin: true, stderr: false }), { stdin: input });
        assert.equal(r.stdout.length, input.length);
        assert.ok(r.stdout.equals(input), 'output differs from input');
        assert.equal(exitCodeOf(parseStatus(r)), 0);
        if (tr.name.startsWith('WebSocket')) assert.equal(r.closeCode, 1000, 'the server closes cleanly');
      });
    }

    it('delivers tty resizes to the backend', async (t) => {
      const backend = new HostBackend();
      const server = await startTestServer(t, backend);
      // The shell exits after one line; resizes are sent before it, so they are reported first.
      const r = await tr.run(execUrl(server, ['sh', '-c', 'read x; sleep 0.2; echo "got $x"'], { stdin: true, tty: true, stderr: false }), {
        stdin: Buffer.from('typed\n'),
        tty: true,
        resize: [{ width: 100, height: 40 }, { width: 132, height: 50 }],
      });
      assert.deepEqual(backend.resizes.slice(0, 2), [{ width: 100, height: 40 }, { width: 132, height: 50 }]);
      assert.equal(r.stdout.toString(), 'resize 100x40\nresize 132x50\ngot typed\n');
    });
  });
}

describe('exec over SPDY, older protocol versions and edge cases', () => {
  it('sends nothing on success and text on failure for v2', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const ok = await spdyExec(execUrl(server, ['echo', 'hi']), { stderr: true }, ['v2.channel.k8s.io']);
    assert.equal(ok.protocol, 'v2.channel.k8s.io');
    assert.equal(ok.stdout.toString(), 'hi\n');
    assert.equal(ok.status, '');
    const bad = await spdyExec(execUrl(server, ['sh', '-c', 'exit 3']), { stderr: true }, ['v2.channel.k8s.io']);
    assert.match(bad.status, /non-zero exit code.*exit code 3$/);
  });

  it('delivers large output whole at shutdown', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const r = await spdyExec(execUrl(server, ['head', '-c', String(24 * 1024 * 1024), '/dev/zero'], { stderr: false }), {});
    assert.equal(r.stdout.length, 24 * 1024 * 1024);
    assert.equal(exitCodeOf(parseStatus(r)), 0);
  });

  it('gives up with GOAWAY when the client never opens all streams', async (t) => {
    const server = await startTestServer(t, new HostBackend(), { streamCreationTimeoutMs: 200 });
    const up = await spdyUpgrade(execUrl(server, ['true']), { protocols: ['v4.channel.k8s.io'] });
    assert.ok(isUpgrade(up));
    await up.conn.createStream({ streamtype: ['error'] });
    const started = Date.now();
    await up.conn.closed;
    assert.ok(Date.now() - started < 5000);
    await assert.rejects(up.conn.createStream({ streamtype: ['stdout'] }));
  });

  it('answers PING and resets streams of an unexpected type', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const up = await spdyUpgrade(execUrl(server, ['true']), { protocols: ['v4.channel.k8s.io'] });
    assert.ok(isUpgrade(up));
    assert.ok((await up.conn.ping()) >= 0);
    await assert.rejects(up.conn.createStream({ streamtype: ['bogus'] }), /reset \(status 1\)/);
    up.socket.destroy();
  });

  it('attach runs the backend and reports success', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const r = await spdyExec(server.getAttachUrl({ containerId: 'c1', tty: false, stdin: false, stdout: true, stderr: false }), {});
    assert.equal(r.stdout.toString(), 'attached\n');
    assert.equal(parseStatus(r).status, 'Success');
  });

  it('closes live sessions cleanly on server close', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const running = spdyExec(execUrl(server, ['sleep', '30'], { stderr: false }), {});
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await server.close();
    const r = await running;
    assert.ok(Date.now() - started < 6000);
    assert.equal(parseStatus(r).status, 'Failure');
  });
});
