import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { exitCodeOf, isUpgrade, parseStatus, spdyExec, spdyUpgrade, wsExec } from '../helpers/stream-client.js';
import { fdCount, makeStreamWorld, runscProcesses, type StreamWorld } from '../helpers/runtime-stream.js';
import { eventually } from '../helpers/wait.js';
import { silentLogger } from '../../cri-api/logger.js';
import { Exec, Runsc, RuntimeStreamBackend } from '../../runtime/index.js';
import { StreamServer } from '../../stream/index.js';

let s: StreamWorld;
let ctr: string;

before(async () => {
  s = await makeStreamWorld();
  ctr = await s.run('shell', { args: ['sleep', '3600'] });
});

after(async () => {
  await s?.cleanup();
});

test('exec reports the exit code (SPDY v4 and WebSocket v5)', async () => {
  const spdy = await spdyExec(await s.execUrl(ctr, ['sh', '-c', 'echo out; echo err >&2; exit 7']), { stdout: true, stderr: true });
  assert.equal(spdy.protocol, 'v4.channel.k8s.io');
  assert.equal(exitCodeOf(parseStatus(spdy)), 7, spdy.status);
  assert.equal(parseStatus(spdy).reason, 'NonZeroExitCode');
  assert.equal(spdy.stdout.toString(), 'out\n');
  assert.equal(spdy.stderr.toString(), 'err\n');

  const ws = await wsExec(await s.execUrl(ctr, ['sh', '-c', 'echo ws; exit 7']), { stdout: true, stderr: true }, 'v5.channel.k8s.io');
  assert.equal(exitCodeOf(JSON.parse(ws.status)), 7, ws.status);
  assert.equal(ws.stdout.toString(), 'ws\n');

  const ok = await spdyExec(await s.execUrl(ctr, ['true'], { stderr: false }), { stdout: true });
  assert.equal(parseStatus(ok).status, 'Success');
});

test('exec runs as the container: its env and working directory', async () => {
  const r = await spdyExec(await s.execUrl(ctr, ['sh', '-c', 'echo $FROM_IMAGE $(pwd)']), { stdout: true, stderr: true });
  assert.equal(r.stdout.toString(), '1 /work\n');
});

test('exec cat round-trips 10 MiB of stdin exactly and ends on stdin EOF (SPDY and WebSocket)', async () => {
  const data = randomBytes(10 * 1024 * 1024);
  const spdy = await spdyExec(await s.execUrl(ctr, ['cat'], { stdin: true }), { stdin: data, stdout: true, stderr: true });
  assert.equal(parseStatus(spdy).status, 'Success', spdy.status);
  assert.equal(spdy.stdout.length, data.length);
  assert.ok(spdy.stdout.equals(data), 'SPDY bytes differ');

  const ws = await wsExec(await s.execUrl(ctr, ['cat'], { stdin: true }), { stdin: data, stdout: true, stderr: true }, 'v5.channel.k8s.io');
  assert.equal(JSON.parse(ws.status).status, 'Success', ws.status);
  assert.equal(ws.closeCode, 1000, 'the server read the client\'s close frame');
  assert.equal(ws.stdout.length, data.length);
  assert.ok(ws.stdout.equals(data), 'WebSocket bytes differ');
});

test('a missing program is an error status, not an exit code', async () => {
  const r = await spdyExec(await s.execUrl(ctr, ['/no/such/program']), { stdout: true, stderr: true });
  const st = parseStatus(r);
  assert.equal(st.status, 'Failure', r.status);
  assert.equal(st.reason, 'InternalError', r.status);
  assert.match(st.message ?? '', /\/no\/such\/program.*no such file/, r.status);
});

test('a TTY exec sees the client terminal size and its resizes', async () => {
  // The resize travels apart from stdin: keep sending lines until one is answered with the new size, then end stdin (EOF).
  const stdin = new PassThrough();
  let out = '';
  let sent = 1;
  stdin.write('hello\n');
  const r = await spdyExec(await s.execUrl(ctr, ['sh', '-c', 'while read x; do echo got=$x; busybox stty size; done'], { tty: true, stdin: true }), {
    tty: true,
    stdin,
    resize: [{ width: 100, height: 30 }],
    onStdout: (c) => {
      out += c.toString();
      if (stdin.writableEnded) return;
      if (out.includes('30 100')) stdin.end();
      else if (sent < 50 && out.split('got=').length > sent) stdin.write(`line${sent++}\n`);
    },
  });
  const text = r.stdout.toString();
  assert.equal(parseStatus(r).status, 'Success', `${r.status} ${text}`);
  assert.match(text, /got=hello/);
  assert.match(text, /30 100/);
});

test('a TTY exec reads EOF when the client closes its stdin', async () => {
  const r = await spdyExec(await s.execUrl(ctr, ['cat'], { tty: true, stdin: true }), { tty: true, stdin: Buffer.from('abc\n') });
  assert.equal(parseStatus(r).status, 'Success', r.status);
  assert.match(r.stdout.toString(), /abc\r\n/);
});

test('a TTY exec ends with its exit code and all its output, and leaves no file or descriptor behind', async () => {
  const warm = await spdyExec(await s.execUrl(ctr, ['true'], { tty: true }), { tty: true, stdout: true });
  assert.equal(parseStatus(warm).status, 'Success', warm.status);
  const fds = fdCount();
  for (let i = 0; i < 5; i++) {
    const r = await spdyExec(await s.execUrl(ctr, ['sh', '-c', `seq 1 2000; echo end-${i}; exit 3`], { tty: true }), { tty: true, stdout: true });
    assert.equal(exitCodeOf(parseStatus(r)), 3, r.status);
    const text = r.stdout.toString();
    assert.match(text, /^1\r\n2\r\n/);
    assert.ok(text.endsWith(`2000\r\nend-${i}\r\n`), text.slice(-50));
  }
  const workDir = join(dirname(s.w.runsc.options.root), 'stream');
  await eventually(async () => runscProcesses(s.w.runsc.options.root, 'exec').length === 0 && fdCount() <= fds + 2 && readdirSync(workDir).length === 0, 10_000, `no runsc exec, descriptors back near ${fds} (now ${fdCount()}), and no files left in ${workDir}`);
});

test('^C typed into a TTY exec interrupts its process', async () => {
  const stdin = new PassThrough();
  let out = '';
  const r = await spdyExec(await s.execUrl(ctr, ['sh', '-c', 'trap "echo got-int; exit 9" INT; echo ready; while true; do sleep 0.1; done'], { tty: true, stdin: true }), {
    tty: true,
    stdin,
    onStdout: (c) => {
      out += c.toString();
      if (out.includes('ready') && !stdin.writableEnded) stdin.end('\x03');
    },
  });
  assert.equal(exitCodeOf(parseStatus(r)), 9, `${r.status} ${out}`);
  assert.match(out, /got-int/);
});

test('a TTY exec whose background child keeps the terminal open still ends', async () => {
  const r = await spdyExec(await s.execUrl(ctr, ['sh', '-c', 'sleep 60 & echo fg-done'], { tty: true }), { tty: true, stdout: true });
  assert.equal(parseStatus(r).status, 'Success', r.status);
  assert.match(r.stdout.toString(), /fg-done\r\n/);
});

test('without the reaper, a TTY exec gets a terminal of its own', async () => {
  const runsc = new Runsc({ ...s.w.runsc.options, reaper: undefined, launcher: undefined });
  const backend = new RuntimeStreamBackend({ rt: s.w.rt, runsc, busybox: s.w.infra.busybox, logger: silentLogger });
  const server = await StreamServer.start({ address: '127.0.0.1', port: 0, backend, logger: silentLogger });
  try {
    const ctx = { logger: silentLogger, signal: new AbortController().signal };
    const { url } = await Exec(s.w.rt, server, { container_id: ctr, cmd: ['sh', '-c', 'busybox stty size; exit 4'], tty: true, stdin: false, stdout: true, stderr: false, audit_request_id: '' }, ctx);
    const r = await spdyExec(url!, { tty: true, stdout: true });
    assert.equal(exitCodeOf(parseStatus(r)), 4, r.status);
    assert.match(r.stdout.toString(), /^\d+ \d+\r\n$/);
  } finally {
    await server.close();
  }
});

test('an abandoned exec is killed in the sandbox', async () => {
  const url = await s.execUrl(ctr, ['sh', '-c', 'echo started; exec sleep 1000'], { stderr: false });
  const up = await spdyUpgrade(url, { protocols: ['v4.channel.k8s.io'] });
  assert.ok(isUpgrade(up));
  await up.conn.createStream({ streamtype: ['error'] });
  const stdout = await up.conn.createStream({ streamtype: ['stdout'] });
  await new Promise<void>((resolve) => stdout.once('data', () => resolve()));
  assert.equal(runscProcesses(s.w.runsc.options.root, 'exec').length, 1);
  up.socket.destroy();
  await eventually(async () => runscProcesses(s.w.runsc.options.root, 'exec').length === 0, 10_000, 'the abandoned runsc exec to end');
  const ps = await spdyExec(await s.execUrl(ctr, ['ps'], { stderr: false }), { stdout: true });
  assert.doesNotMatch(ps.stdout.toString(), /sleep 1000/);
});

test('50 sequential execs leak no process or descriptor', async () => {
  // Warm up once so lazily opened descriptors are counted in the baseline.
  await spdyExec(await s.execUrl(ctr, ['echo', 'warm'], { stdin: true }), { stdin: Buffer.from('x'), stdout: true, stderr: true });
  const fds = fdCount();
  for (let i = 0; i < 50; i++) {
    const r = await spdyExec(await s.execUrl(ctr, ['sh', '-c', `read x; echo $x-${i}`], { stdin: true }), { stdin: Buffer.from('n\n'), stdout: true, stderr: true });
    assert.equal(r.stdout.toString(), `n-${i}\n`);
  }
  await eventually(async () => runscProcesses(s.w.runsc.options.root, 'exec').length === 0 && fdCount() <= fds + 2, 10_000, `no runsc exec left and descriptors back near ${fds} (now ${fdCount()})`);
});

test('Exec: unknown container is NOT_FOUND, an exited one FAILED_PRECONDITION, empty cmd INVALID_ARGUMENT', async () => {
  await assert.rejects(s.execUrl('nope', ['true']), { code: 5 });
  const done = await s.run('done', { args: ['true'] });
  await eventually(async () => s.w.rt.getContainer(done)?.phase === 'exited', 10_000, 'the container to exit');
  await assert.rejects(s.execUrl(done, ['true']), { code: 9 });
  await assert.rejects(s.execUrl(ctr, []), { code: 3 });
});
