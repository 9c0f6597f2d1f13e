// Seccomp over the real daemon's socket, as critest checks it: a Localhost
// profile and RuntimeDefault filter not only the container's first process
// but every ExecSync and streaming exec, also after a daemon restart.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { exitCodeOf, parseStatus, spdyExec } from '../helpers/stream-client.js';

const INDEX = 27;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let work: string;
let pod: string;
let localhost: string;
let runtimeDefault: string;

function podConfig(name: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'seccomp', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name) };
}

async function runContainer(name: string, seccomp: object): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: `${name}.log`, linux: { security_context: { seccomp } } };
  const { container_id } = await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('seccomp') });
  await d.call('runtime', 'StartContainer', { container_id });
  return container_id;
}

const execSync = (id: string, cmd: string[]) => d.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: id, cmd, timeout: 20 });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gvcri-seccomp-'));
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/seccomp', {
    layers: [{ entries: busyboxEntries([...new Set([...BUSYBOX_APPLETS, 'chmod', 'grep'])]) }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  })).ref;
  const profile = join(work, 'deny-chmod.json');
  await writeFile(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat'], action: 'SCMP_ACT_ERRNO' }] }));
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
  pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('seccomp') })).pod_sandbox_id;
  localhost = await runContainer('localhost', { profile_type: 'Localhost', localhost_ref: profile });
  runtimeDefault = await runContainer('default', { profile_type: 'RuntimeDefault' });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('ExecSync under a Localhost profile: chmod is not permitted', async () => {
  const r = await execSync(localhost, ['chmod', '400', '/']);
  assert.notEqual(r.exit_code, 0);
  assert.match(r.stderr.toString(), /Operation not permitted/);
});

test('ExecSync under RuntimeDefault runs in seccomp filter mode', async () => {
  const r = await execSync(runtimeDefault, ['grep', 'ecc', '/proc/self/status']);
  assert.equal(r.exit_code, 0, r.stderr.toString());
  assert.match(r.stdout.toString(), /Seccomp:\t2/);
});

test('a streaming exec (plain and TTY) is filtered the same way', async () => {
  const url = (await d.call<{ url: string }>('runtime', 'Exec', { container_id: localhost, cmd: ['chmod', '400', '/'], stdout: true, stderr: true })).url;
  const r = await spdyExec(url, { stdout: true, stderr: true });
  assert.notEqual(exitCodeOf(parseStatus(r)), 0, r.status);
  assert.match(r.stderr.toString(), /Operation not permitted/);
  const ttyUrl = (await d.call<{ url: string }>('runtime', 'Exec', { container_id: localhost, cmd: ['sh', '-c', 'chmod 400 / || echo refused'], tty: true, stdout: true })).url;
  const tty = await spdyExec(ttyUrl, { tty: true, stdout: true });
  assert.match(tty.stdout.toString(), /Operation not permitted[\s\S]*refused/);
});

test('after a daemon restart, execs are still filtered', async () => {
  await d.stop();
  d = await startDaemon({ reuse: d, conflist: testConflist(INDEX) });
  const r = await execSync(localhost, ['chmod', '400', '/']);
  assert.match(r.stderr.toString(), /Operation not permitted/);
  assert.match((await execSync(runtimeDefault, ['grep', 'Seccomp:', '/proc/self/status'])).stdout.toString(), /Seccomp:\t2/);
});
