import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RunscError } from '../../runtime/runsc/runsc.js';
import { exitStatus, SandboxControl, WaitUnanswered } from '../../runtime/runsc/sandbox-control.js';
import { eventually } from '../helpers/wait.js';

// A stand-in for a sandbox's control server: what it answers is up to each test.
let dir: string;
const servers: Server[] = [];
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gvcri-control-'));
});
after(async () => {
  for (const s of servers) s.close();
  await rm(dir, { recursive: true, force: true });
});

/** Listens as sandbox `id` under `root`; `onCall` gets each call's text and the connection. */
async function fakeSandbox(root: string, id: string, onCall: (call: string, conn: Socket) => void): Promise<void> {
  const server = createServer((conn) => {
    let text = '';
    conn.setEncoding('utf8');
    conn.on('data', (d: string) => {
      text += d;
      try {
        JSON.parse(text);
      } catch {
        return;
      }
      onCall(text, conn);
    });
  });
  servers.push(server);
  // Node binds paths of any length only through a relative name: the fake binds from inside root, as runsc does through a dir fd.
  const cwd = process.cwd();
  process.chdir(root);
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(`runsc-${id}.sock`, resolve));
  } finally {
    process.chdir(cwd);
  }
}

test('the wait status becomes what runsc wait prints: the exit code, or 128 + the killing signal', () => {
  assert.equal(exitStatus(0), 0);
  assert.equal(exitStatus(3 << 8), 3);
  assert.equal(exitStatus(9), 137);
  assert.equal(exitStatus(15), 143);
});

test('one Wait call with the container id; the answer may come in pieces', async () => {
  const calls: unknown[] = [];
  await fakeSandbox(dir, 'sb1', (call, conn) => {
    calls.push(JSON.parse(call));
    const answer = JSON.stringify({ success: true, err: '', result: 2 << 8 });
    conn.write(answer.slice(0, 10));
    setImmediate(() => conn.write(answer.slice(10)));
  });
  assert.equal(await new SandboxControl(dir).wait('sb1', 'ctr1'), 2);
  assert.deepEqual(calls, [{ method: 'containerManager.Wait', arg: 'ctr1' }]);
});

test('a root dir too long for a socket path is reached through a descriptor of the dir', async () => {
  const deep = join(dir, 'd'.repeat(60), 'e'.repeat(60));
  await mkdir(deep, { recursive: true });
  await fakeSandbox(deep, 'sb-long', (_call, conn) => conn.write(JSON.stringify({ success: true, err: '', result: 9 })));
  assert.equal(await new SandboxControl(deep).wait('sb-long', 'c'), 137);
});

test('no socket, a refused call or a foreign answer leave it to runsc wait', async () => {
  const control = new SandboxControl(dir);
  await assert.rejects(control.wait('no-such-sandbox', 'c'), WaitUnanswered);
  await fakeSandbox(dir, 'sb-refuses', (_call, conn) => conn.write(JSON.stringify({ success: false, err: 'unknown method', result: null })));
  await assert.rejects(control.wait('sb-refuses', 'c'), (err: Error) => err instanceof WaitUnanswered && /unknown method/.test(err.message));
  await fakeSandbox(dir, 'sb-foreign', (_call, conn) => conn.write('{"hello": "world"}'));
  await assert.rejects(control.wait('sb-foreign', 'c'), WaitUnanswered);
});

test('a sandbox that closes the connection while the container runs is an error of its own, not a fallback', async () => {
  await fakeSandbox(dir, 'sb-dies', (_call, conn) => conn.destroy());
  await assert.rejects(new SandboxControl(dir).wait('sb-dies', 'c'), (err: Error) => err instanceof RunscError && err.kind === 'not-running' && /closed its control socket/.test(err.message));
});

test('an abort ends the wait with a cancelled RunscError and closes the connection', async () => {
  let closed: Promise<void> | undefined;
  await fakeSandbox(dir, 'sb-slow', (_call, conn) => {
    closed = new Promise((resolve) => conn.on('close', () => resolve()));
  });
  const ac = new AbortController();
  const waiting = new SandboxControl(dir).wait('sb-slow', 'c', ac.signal);
  await eventually(async () => closed !== undefined, 10_000, 'the call to reach the sandbox');
  ac.abort();
  await assert.rejects(waiting, (err: Error) => err instanceof RunscError && err.kind === 'cancelled');
  await closed;
});
