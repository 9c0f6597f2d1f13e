import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { logLines } from '../helpers/cri-world.js';
import { eventually } from '../helpers/wait.js';
import { isUpgrade, parseStatus, spdyExec, spdyUpgrade } from '../helpers/stream-client.js';
import { makeStreamWorld, type StreamWorld } from '../helpers/runtime-stream.js';

let s: StreamWorld;
const LOOP = 'echo ready; while read line; do echo got:$line; echo err:$line >&2; done; echo bye';

before(async () => {
  s = await makeStreamWorld('attach');
});

after(async () => {
  await s?.cleanup();
});

test('attach reads a running container\'s output, writes its stdin, and detaching leaves it running', async () => {
  const id = await s.run('echoer', { args: ['sh', '-c', LOOP], extra: { stdin: true, stdin_once: false } });
  const up = await spdyUpgrade(await s.attachUrl(id, { stdin: true }), { protocols: ['v4.channel.k8s.io'] });
  assert.ok(isUpgrade(up));
  await up.conn.createStream({ streamtype: ['error'] });
  const stdin = await up.conn.createStream({ streamtype: ['stdin'] });
  const stdout = await up.conn.createStream({ streamtype: ['stdout'] });
  const stderr = await up.conn.createStream({ streamtype: ['stderr'] });
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => { out += c.toString(); });
  stderr.on('data', (c: Buffer) => { err += c.toString(); });
  stdin.write('hello\n');
  await eventually(async () => out.includes('got:hello') && err.includes('err:hello'), 10_000, 'the echo over attach');
  up.socket.destroy();
  // The CRI log got the same output (attach tees, it does not steal).
  const log = join(s.w.logDir, 'attach', 'echoer.log');
  await eventually(async () => logLines(log).includes('got:hello'), 5_000, 'the CRI log line');
  // A second attach works after the first one left.
  const again = await spdyUpgrade(await s.attachUrl(id, { stdin: true, stderr: false }), { protocols: ['v4.channel.k8s.io'] });
  assert.ok(isUpgrade(again));
  await again.conn.createStream({ streamtype: ['error'] });
  const stdin2 = await again.conn.createStream({ streamtype: ['stdin'] });
  const stdout2 = await again.conn.createStream({ streamtype: ['stdout'] });
  let out2 = '';
  stdout2.on('data', (c: Buffer) => { out2 += c.toString(); });
  stdin2.write('again\n');
  await eventually(async () => out2.includes('got:again'), 10_000, 'the echo over the second attach');
  // The first attach left long before: leaving did not stop the container.
  assert.equal(s.w.rt.getContainer(id)?.phase, 'running');
  again.socket.destroy();
});

test('stdin_once: the container\'s stdin closes when the attach session\'s stdin ends; the session ends with the container', async () => {
  const id = await s.run('once', { args: ['sh', '-c', LOOP], extra: { stdin: true, stdin_once: true } });
  const r = await spdyExec(await s.attachUrl(id, { stdin: true }), { stdin: Buffer.from('a\nb\n'), stdout: true, stderr: true });
  assert.equal(parseStatus(r).status, 'Success', r.status);
  assert.match(r.stdout.toString(), /got:a\ngot:b\nbye\n$/);
  assert.match(r.stderr.toString(), /err:a\nerr:b\n/);
  await eventually(async () => s.w.rt.getContainer(id)?.phase === 'exited', 10_000, 'the container to exit');
});

test('Attach: unknown container is NOT_FOUND', async () => {
  await assert.rejects(s.attachUrl('nope'), { code: 5 });
});

test('a tty container has a terminal: attach with resize, echo, \\r\\n, a CRI log on stdout; stdin_once ends its input', async () => {
  const loop = 'echo ready; while read line; do echo got:$line; busybox stty size; done; echo bye';
  const id = await s.run('tty', { args: ['sh', '-c', loop], extra: { stdin: true, stdin_once: true, tty: true } });
  assert.equal(s.w.rt.getContainer(id)?.terminal, true);
  // The resize travels apart from stdin: keep sending lines until an answer shows the new size.
  const stdin = new PassThrough();
  let seen = '';
  let sent = 1;
  stdin.write('hello\n');
  const r = await spdyExec(await s.attachUrl(id, { tty: true, stdin: true }), {
    tty: true,
    stdin,
    resize: [{ width: 123, height: 45 }],
    onStdout: (chunk) => {
      seen += chunk.toString();
      if (stdin.writableEnded) return;
      if (seen.includes('45 123')) stdin.end();
      else if (sent < 50 && seen.split('got:').length > sent) stdin.write(`line${sent++}\n`);
    },
  });
  assert.equal(parseStatus(r).status, 'Success', r.status);
  const out = r.stdout.toString();
  // The terminal echoes the input and ends lines with \r\n; the size is the client's.
  assert.match(out, /hello\r\n/);
  assert.match(out, /got:\w+\r\n45 123\r\n/);
  await eventually(async () => s.w.rt.getContainer(id)?.phase === 'exited', 10_000, 'the container to exit on end of input');
  assert.equal(s.w.rt.getContainer(id)?.exitCode, 0);
  const log = join(s.w.logDir, 'attach', 'tty.log');
  // Lines keep the terminal's \r, as containerd's CRI logs of tty containers do.
  await eventually(async () => / stdout F got:hello\r\n/.test(readFileSync(log, 'utf8')), 5_000, 'the CRI log line');
  const raw = readFileSync(log, 'utf8');
  assert.doesNotMatch(raw, / stderr /);
});
