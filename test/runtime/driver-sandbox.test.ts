import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { silentLogger } from '../../cri-api/logger.js';
import { CriLogWriter } from '../../runtime/logs/cri-log.js';
import { OutputFifo } from '../../runtime/logs/log-pipe.js';
import { Runsc } from '../../runtime/runsc/runsc.js';
import { SandboxDriver, type ContainerIo } from '../../runtime/runsc/sandbox-driver.js';
import { buildExecProcess } from '../../runtime/spec/oci-spec.js';
import { containerSpec, makeRuntimeEnv, sandboxProcesses, sandboxSpec, type RuntimeEnv } from '../helpers/runtime-env.js';
import { eventually, withDeadline } from '../helpers/wait.js';

let env: RuntimeEnv;
const SB = `sb-${process.pid}`;

before(async () => {
  env = await makeRuntimeEnv('driver');
  const t0 = Date.now();
  await env.driver.createSandbox({ id: SB, bundleDir: join(env.dir, 'bundles', SB), spec: sandboxSpec(env, SB), networkMode: 'none', needsNetnsWorkaround: false });
  console.log(`# sandbox create+start: ${Date.now() - t0} ms`);
});
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers) await c();
  await env?.cleanup();
});

/** Creates an app container whose stdout/stderr go to a CRI log file; returns the log path, its start (when not started here) and a closer. */
async function runContainer(id: string, args: string[], start = true): Promise<{ logPath: string; start: () => Promise<void>; close: () => Promise<void> }> {
  const logPath = join(env.dir, 'logs', `${id}.log`);
  const writer = new CriLogWriter(logPath);
  await writer.open();
  const stdout = await OutputFifo.create(join(env.dir, `${id}.out`));
  const stderr = await OutputFifo.create(join(env.dir, `${id}.err`));
  const pumps = [writer.pump(stdout.reader, 'stdout'), writer.pump(stderr.reader, 'stderr')];
  const io: ContainerIo = { kind: 'fifo', stdout, stderr };
  const t0 = Date.now();
  const bundleDir = join(env.dir, 'bundles', id);
  await env.driver.prepareContainer({ id, sandboxId: SB, bundleDir, spec: containerSpec(env, SB, args) });
  const startIt = (): Promise<void> => env.driver.startContainer({ id, bundleDir, io });
  if (start) await startIt();
  console.log(`# container ${id} create${start ? '+start' : ''}: ${Date.now() - t0} ms`);
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await stdout.close();
    await stderr.close();
    await withDeadline(Promise.all(pumps), 10_000, `the output of ${id} to end`);
    await writer.close();
  };
  closers.push(close);
  return { logPath, start: startIt, close };
}

test('two containers share one read-only rootfs, each sees only its own writes, in one sandbox process', async () => {
  const a = await runContainer('c-a', ['sh', '-c', 'echo A > /mine; sleep 0.3; ls /; cat /mine']);
  const b = await runContainer('c-b', ['sh', '-c', 'echo B > /mine; sleep 0.3; ls /; cat /mine']);
  assert.equal(await env.driver.waitContainer('c-a', SB), 0);
  assert.equal(await env.driver.waitContainer('c-b', SB), 0);
  await a.close();
  await b.close();
  const la = await readFile(a.logPath, 'utf8');
  const lb = await readFile(b.logPath, 'utf8');
  assert.match(la, / stdout F A\n/);
  assert.match(lb, / stdout F B\n/);
  assert.equal((await readdir(env.busybox)).includes('mine'), false, 'the shared rootfs dir was not written');
  assert.equal(sandboxProcesses(env.runsc.options.root), 1);
  await env.driver.removeContainer('c-a');
  await env.driver.removeContainer('c-b');
});

test('the exit code comes from the sandbox itself; runsc wait only where its control socket cannot be asked', async () => {
  const asked: string[] = [];
  const counting = new SandboxDriver(new Runsc({ ...env.runsc.options, onCommand: (sub) => asked.push(sub) }), silentLogger);
  await runContainer('c-exit', ['sh', '-c', 'sleep 0.5; exit 3']);
  assert.equal(await counting.waitContainer('c-exit', SB), 3);
  // Asked again after the exit: still known to the sandbox until the container is deleted.
  assert.equal(await counting.waitContainer('c-exit', SB), 3);
  assert.deepEqual(asked, []);
  // No such sandbox socket: runsc wait, which finds the container through its state.
  assert.equal(await counting.waitContainer('c-exit', 'not-this-sandbox'), 3);
  assert.deepEqual(asked, ['wait']);
  await env.driver.removeContainer('c-exit');
});

test('stop: a container trapping TERM exits by itself; one ignoring it is killed after the timeout', async () => {
  await runContainer('c-trap', ['sh', '-c', 'trap "exit 0" TERM; touch /tmp/trapped; while true; do sleep 0.1; done']);
  await runContainer('c-ignore', ['sh', '-c', 'trap "" TERM; touch /tmp/trapped; while true; do sleep 0.1; done']);
  for (const id of ['c-trap', 'c-ignore']) await eventually(async () => (await env.driver.execSync(id, buildExecProcess({ args: ['test', '-e', '/tmp/trapped'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] }), 5000)).exitCode === 0, 10_000, `the trap of ${id}`);
  const waits = [env.driver.waitContainer('c-trap', SB), env.driver.waitContainer('c-ignore', SB)];
  let t0 = Date.now();
  await env.driver.stopContainer('c-trap', 5);
  const trapMs = Date.now() - t0;
  t0 = Date.now();
  await env.driver.stopContainer('c-ignore', 1);
  const ignoreMs = Date.now() - t0;
  console.log(`# stop trapping TERM: ${trapMs} ms; stop ignoring TERM (1 s timeout): ${ignoreMs} ms`);
  assert.ok(trapMs < 3000, `trapping container took ${trapMs} ms`);
  assert.ok(ignoreMs >= 1000 && ignoreMs < 5000, `ignoring container took ${ignoreMs} ms`);
  const [trapCode, ignoreCode] = await Promise.all(waits);
  assert.equal(trapCode, 0);
  assert.equal(ignoreCode, 137);
  await env.driver.removeContainer('c-trap');
  await env.driver.removeContainer('c-ignore');
});

test('a prepared container is not runsc\'s until it starts; stopping and removing it need no runsc state', async () => {
  const c = await runContainer('c-created', ['true'], false);
  await assert.rejects(env.driver.state('c-created'), (err: Error & { kind?: string }) => err.kind === 'not-found');
  await env.driver.stopContainer('c-created', 1);
  await env.driver.removeContainer('c-created');
  await c.close();
});

test('a failed start leaves no runsc state behind (runsc run destroys what it made)', async () => {
  const id = 'c-badexec';
  const c = await runContainer(id, ['/no/such/program'], false);
  await assert.rejects(c.start(), /no\/such\/program|no such file/i);
  await assert.rejects(env.driver.state(id), (err: Error & { kind?: string }) => err.kind === 'not-found');
  await c.close();
});

test('privileged container (every capability runsc knows) starts', async () => {
  const id = 'c-priv';
  const logPath = join(env.dir, 'logs', `${id}.log`);
  const writer = new CriLogWriter(logPath);
  await writer.open();
  const stdout = await OutputFifo.create(join(env.dir, `${id}.out`));
  const stderr = await OutputFifo.create(join(env.dir, `${id}.err`));
  const pump = writer.pump(stdout.reader, 'stdout');
  await env.driver.prepareContainer({ id, sandboxId: SB, bundleDir: join(env.dir, 'bundles', id), spec: (await import('../helpers/runtime-env.js')).containerSpec(env, SB, ['sh', '-c', 'grep CapEff /proc/self/status || cat /proc/self/status | head -20'], { privileged: true }) });
  await env.driver.startContainer({ id, bundleDir: join(env.dir, 'bundles', id), io: { kind: 'fifo', stdout, stderr } });
  assert.equal(await env.driver.waitContainer(id, SB), 0);
  await stdout.close();
  await stderr.close();
  await withDeadline(pump, 10_000, 'the output to end');
  await writer.close();
  await env.driver.removeContainer(id);
});

test('execSync returns output and exit code; a timeout kills the process', async () => {
  await runContainer('c-exec', ['sleep', '1000']);
  const proc = (args: string[]) => buildExecProcess({ args, env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] });
  let t0 = Date.now();
  const r = await env.driver.execSync('c-exec', proc(['sh', '-c', 'echo out; echo err >&2; exit 4']), 10_000);
  console.log(`# execSync sh -c: ${Date.now() - t0} ms`);
  assert.equal(r.exitCode, 4);
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
  t0 = Date.now();
  const slow = await env.driver.execSync('c-exec', proc(['sleep', '30']), 500);
  const ms = Date.now() - t0;
  assert.equal(slow.timedOut, true);
  assert.ok(ms < 4000, `timed-out exec took ${ms} ms`);
  const ps = await env.runsc.ps('c-exec');
  assert.equal(ps.some((p) => p.Cmd === 'sleep' && p.PID !== 1 && ps.length > 1), false, 'the timed-out sleep is gone');
  await env.driver.stopContainer('c-exec', 0);
  await env.driver.removeContainer('c-exec');
});
