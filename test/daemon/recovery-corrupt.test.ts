// Start-up recovery goes on past what it cannot use: a garbage pod record and garbage
// container records beside good ones, and a half-created container whose cleanup fails.
// The restarted daemon serves the good pod and its running container, has moved the bad
// files aside as <file>.corrupt-<time> without logging their content, and counts each
// problem in gvisor_cri_recovery_problems_total.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { freePort } from '../helpers/network-env.js';

const run = promisify(execFile);
let registry: TestRegistry;
let first: TestDaemon | undefined;
let d: TestDaemon | undefined;
let mounted: string | undefined;

before(async () => {
  registry = await startRegistry();
});

after(async () => {
  try {
    if (mounted) await run('umount', [mounted]).catch(() => undefined);
    // The pod outlives a stopped daemon: a daemon on the same dirs removes it.
    if (first && (!d || d.proc.exitCode !== null || d.proc.signalCode !== null)) d = await startDaemon({ reuse: first, conflist: testConflist('recovery-corrupt') });
    await removeAllPods(d);
    await d?.stop();
    await first?.cleanup();
    if (first) await rm(first.dir, { recursive: true, force: true });
  } finally {
    await registry?.stop();
  }
});

const hex = (c: string): string => c.repeat(64);

test('recovery moves unreadable records aside, goes on past a failing cleanup, and counts both', async () => {
  const image = (await pushTestImage(registry.url, 'e2e/recovery-corrupt', { layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  const conflist = testConflist('recovery-corrupt');
  first = await startDaemon({ conflist });
  await first.call('image', 'PullImage', { image: { image } });
  const podConfig = { metadata: { name: 'good', uid: 'uid-good', namespace: 'e2e', attempt: 0 }, hostname: 'good', log_directory: join(first.logDir, 'good') };
  const pod = (await first.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig })).pod_sandbox_id;
  const config = { metadata: { name: 'sleeper', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'sleeper.log' };
  const ctr = (await first.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig })).container_id;
  await first.call('runtime', 'StartContainer', { container_id: ctr });
  await first.stop();

  const pods = join(first.stateDir, 'pods');
  const containers = join(first.stateDir, 'containers');
  // Not JSON (with a secret in it that must not reach the log); JSON of the wrong shape.
  await writeFile(join(pods, `${hex('a')}.json`), '{"id": "aaaa", "env": ["TOKEN=hunter2-secret"], truncat', { mode: 0o600 });
  await writeFile(join(containers, `${hex('b')}.json`), 'TOKEN=hunter2-secret\0\0\0', { mode: 0o600 });
  await writeFile(join(containers, `${hex('c')}.json`), JSON.stringify({ id: hex('c'), phase: 'running' }), { mode: 0o600 });
  // A half-created container of the good pod whose directory cannot be removed (a read-only mount point).
  const good = JSON.parse(await readFile(join(containers, `${ctr}.json`), 'utf8')) as Record<string, unknown>;
  await writeFile(join(containers, `${hex('d')}.json`), JSON.stringify({ ...good, id: hex('d'), name: 'half-made', phase: 'creating' }), { mode: 0o600 });
  mounted = join(first.runDir, 'containers', hex('d'));
  await mkdir(mounted, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', 'ro,size=4k', 'tmpfs', mounted]);

  const metricsPort = await freePort();
  d = await startDaemon({ reuse: first, conflist, args: ['--metrics-port', String(metricsPort)] });

  // The good pod and its container came back.
  const listed = await d.call<{ items: { id: string; state: string }[] }>('runtime', 'ListPodSandbox', {});
  assert.deepEqual(listed.items.map((p) => [p.id, p.state]), [[pod, 'SANDBOX_READY']]);
  const st = await d.call<{ status: { state: string } }>('runtime', 'ContainerStatus', { container_id: ctr });
  assert.equal(st.status.state, 'CONTAINER_RUNNING');
  const exec = await d.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: ctr, cmd: ['echo', 'alive'], timeout: 20 });
  assert.equal(exec.stdout.toString(), 'alive\n');

  // The unreadable records were moved aside; the good ones, and the one whose cleanup failed, stay.
  const aside = (names: string[], id: string): boolean => names.some((n) => n.startsWith(`${id}.json.corrupt-`));
  const podFiles = await readdir(pods);
  const ctrFiles = await readdir(containers);
  assert.ok(aside(podFiles, hex('a')) && !podFiles.includes(`${hex('a')}.json`), podFiles.join(', '));
  assert.ok(aside(ctrFiles, hex('b')) && !ctrFiles.includes(`${hex('b')}.json`), ctrFiles.join(', '));
  assert.ok(aside(ctrFiles, hex('c')) && !ctrFiles.includes(`${hex('c')}.json`), ctrFiles.join(', '));
  assert.ok(podFiles.includes(`${pod}.json`) && ctrFiles.includes(`${ctr}.json`) && ctrFiles.includes(`${hex('d')}.json`));

  // Logged with their reasons, never their content.
  const log = d.output();
  assert.match(log, /unreadable record moved aside/);
  assert.match(log, /field sandboxId is not a string/);
  assert.match(log, /recovery: rolling back a half-created container failed; going on with the rest/);
  assert.doesNotMatch(log, /hunter2/);

  // Counted.
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /gvisor_cri_recovery_problems_total\{kind="pod",problem="unreadable_record"\} 1\b/);
  assert.match(metrics, /gvisor_cri_recovery_problems_total\{kind="container",problem="unreadable_record"\} 2\b/);
  assert.match(metrics, /gvisor_cri_recovery_problems_total\{kind="container",problem="failed_step"\} 1\b/);

  // Once the obstacle is gone, a restart finishes the cleanup.
  await run('umount', [mounted]);
  mounted = undefined;
  await d.stop();
  d = await startDaemon({ reuse: first, conflist });
  assert.ok(!(await readdir(containers)).includes(`${hex('d')}.json`));
});
