// ctl's interactive exec client against the real streaming server (stream/)
// with a host-process backend: what `ctl exec -i/-t` does once the daemon
// returns an Exec URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { HostBackend } from '../helpers/stream-host-backend.js';
import { startTestServer } from '../helpers/stream-server.js';
import { exitCodeFromStatus, streamExec } from '../../ctl/exec-stream.js';
import { CtlError } from '../../ctl/client.js';

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

test('stdin reaches the process, stdout and stderr stay apart, the exit code comes back', async (t) => {
  const server = await startTestServer(t, new HostBackend());
  const out = sink();
  const err = sink();
  const url = server.getExecUrl({ containerId: 'c1', cmd: ['sh', '-c', 'cat; echo oops >&2; exit 3'], tty: false, stdin: true, stdout: true, stderr: true });
  const code = await streamExec(url, { stdin: Readable.from([Buffer.from('hello\n'), Buffer.from('world\n')]), stdout: out.stream, stderr: err.stream, tty: false });
  assert.equal(code, 3);
  assert.equal(out.text(), 'hello\nworld\n');
  assert.equal(err.text(), 'oops\n');
});

test('with a tty the terminal size is sent first and again on a resize', async (t) => {
  const backend = new HostBackend();
  const server = await startTestServer(t, backend);
  const out = sink();
  let size = { width: 80, height: 24 };
  let notify: () => void = () => undefined;
  const stdin = new PassThrough();
  const url = server.getExecUrl({ containerId: 'c1', cmd: ['cat'], tty: true, stdin: true, stdout: true, stderr: false });
  const running = streamExec(url, {
    stdin, stdout: out.stream, tty: true,
    size: () => size,
    onResize: (l) => { notify = l; return () => { notify = () => undefined; }; },
  });
  const waitFor = async (s: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!out.text().includes(s)) {
      if (Date.now() > deadline) throw new Error(`no "${s}" in ${JSON.stringify(out.text())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitFor('resize 80x24');
  size = { width: 120, height: 40 };
  notify();
  await waitFor('resize 120x40');
  stdin.end('bye\n');
  assert.equal(await running, 0);
  assert.match(out.text(), /bye/);
  assert.deepEqual(backend.resizes, [{ width: 80, height: 24 }, { width: 120, height: 40 }]);
});

test('an expired or used URL is a clear error, not a hang', async (t) => {
  const server = await startTestServer(t, new HostBackend());
  const url = server.getExecUrl({ containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false });
  assert.equal(await streamExec(url, { stdout: sink().stream, tty: false }), 0);
  await assert.rejects(streamExec(url, { stdout: sink().stream, tty: false }), (e: Error) => e instanceof CtlError && /refused the exec session: HTTP 404/.test(e.message));
});

test('status parsing: v4 JSON, older text, failures', () => {
  assert.equal(exitCodeFromStatus('v4.channel.k8s.io', '{"metadata":{},"status":"Success"}'), 0);
  assert.equal(exitCodeFromStatus('v4.channel.k8s.io', JSON.stringify({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '42' }] } })), 42);
  assert.throws(() => exitCodeFromStatus('v4.channel.k8s.io', JSON.stringify({ status: 'Failure', reason: 'InternalError', message: 'Internal error occurred: no such container' })), /exec: Internal error occurred: no such container/);
  assert.equal(exitCodeFromStatus('v2.channel.k8s.io', ''), 0);
  assert.throws(() => exitCodeFromStatus('v2.channel.k8s.io', 'boom'), /exec: boom/);
});
