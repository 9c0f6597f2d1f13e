// Inputs that reach paths, the shell or the log, over the real daemon's socket: log_directory
// and log_path, sysctl names, a Localhost seccomp profile that is not JSON; ExecSync whose
// caller goes away; exec process files left by a crash. Each bad input is INVALID_ARGUMENT
// naming its field and leaves nothing behind.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startDaemon, testConflist, type TestDaemon, removeAllPods, waitFor } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';

let registry: TestRegistry;
let first: TestDaemon;
let d: TestDaemon;
let image: string;
const conflist = testConflist('hardening-inputs');

before(async () => {
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/hardening-inputs', { layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  first = d = await startDaemon({ conflist });
  await d.call('image', 'PullImage', { image: { image } });
});

after(async () => {
  await removeAllPods(d);
  await d?.stop();
  await first?.cleanup();
  if (first) await rm(first.dir, { recursive: true, force: true });
  await registry?.stop();
});

const podConfig = (name: string, extra: Record<string, unknown> = {}) => ({ metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name), ...extra });
const invalid = (re: RegExp) => (err: grpc.ServiceError) => {
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, re);
  return true;
};
const listPods = async (): Promise<unknown[]> => (await d.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {})).items;

test('a bad log_directory or sysctl name refuses the pod before anything is made', async () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ log_directory: 'relative/logs' }, /config\.log_directory "relative\/logs" must be an absolute path/],
    [{ log_directory: '/var/log/pods/a\0b' }, /config\.log_directory must not contain a NUL byte/],
    [{ log_directory: '/var/log/../../etc' }, /config\.log_directory .* must not contain "\.\."/],
    [{ linux: { sysctls: { 'kernel.shm_rmid_forced; touch /x': '1' } } }, /config\.linux\.sysctls: "kernel\.shm_rmid_forced; touch \/x" is not a sysctl name/],
    [{ linux: { sysctls: { 'net.ipv4.$(reboot)': '1' } } }, /is not a sysctl name/],
    [{ linux: { sysctls: { 'net.ipv4.ip_forward': '1\n2' } } }, /value of net\.ipv4\.ip_forward must not contain a NUL byte or a newline/],
  ];
  for (const [extra, re] of bad) {
    await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: podConfig('bad-input', extra) }), invalid(re));
  }
  assert.deepEqual(await listPods(), []);
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), []);
  assert.deepEqual(await readdir(join(d.stateDir, 'pods')), []);
});

test('a bad log_path or an unparsable Localhost seccomp profile refuses the container; the profile is not echoed', async () => {
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('ctr-input') })).pod_sandbox_id;
  const create = (extra: Record<string, unknown>) =>
    d.call('runtime', 'CreateContainer', { pod_sandbox_id: pod, config: { metadata: { name: 'c', attempt: 0 }, image: { image }, log_path: 'c.log', ...extra }, sandbox_config: podConfig('ctr-input') });
  await assert.rejects(create({ log_path: '../../escape.log' }), invalid(/config\.log_path "\.\.\/\.\.\/escape\.log" must not contain "\.\."/));
  await assert.rejects(create({ log_path: '/etc/cron.d/evil' }), invalid(/config\.log_path "\/etc\/cron\.d\/evil" must be relative/));
  await assert.rejects(create({ log_path: 'c\0.log' }), invalid(/config\.log_path must not contain a NUL byte/));

  const profile = join(d.dir, 'not-json-profile');
  await writeFile(profile, 'root:$6$hunter2-secret-hash:19000:0:99999:7:::\n');
  await assert.rejects(create({ linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: profile } } } }), (err: grpc.ServiceError) => {
    invalid(/seccomp profile .*not-json-profile is not JSON/)(err);
    assert.doesNotMatch(err.details, /hunter2/);
    return true;
  });
  assert.doesNotMatch(d.output(), /hunter2/);
  const listed = await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: pod } });
  assert.deepEqual(listed.containers, []);
  assert.deepEqual(await readdir(join(d.runDir, 'containers')).catch(() => []), []);
});

test('ExecSync whose caller goes away kills its process and leaves no process file', async () => {
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('exec-cancel') })).pod_sandbox_id;
  const config = { metadata: { name: 'sleeper', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'sleeper.log' };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('exec-cancel') })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  // No ExecSync timeout: only the gRPC deadline of the call ends it.
  await assert.rejects(d.call('runtime', 'ExecSync', { container_id: ctr, cmd: ['sleep', '4242'], timeout: 0 }, 1500), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
  await waitFor(async () => {
    const ps = await d.call<{ stdout: Buffer }>('runtime', 'ExecSync', { container_id: ctr, cmd: ['ps'], timeout: 10 });
    return ps.stdout.toString().includes('4242') ? undefined : true;
  }, 15_000, 'the abandoned exec to be killed');
  await waitFor(async () => ((await readdir(join(d.runDir, 'exec')).catch(() => [])).length === 0 ? true : undefined), 10_000, 'no exec process file');
});

test('exec process files a crash left are swept at start', async () => {
  await removeAllPods(d);
  d.proc.kill('SIGKILL');
  await d.stop();
  for (const dir of ['exec', 'stream']) {
    await mkdir(join(first.runDir, dir), { recursive: true, mode: 0o700 });
    await writeFile(join(first.runDir, dir, 'left-1.json'), JSON.stringify({ env: ['SECRET=left-behind'] }), { mode: 0o600 });
  }
  d = await startDaemon({ reuse: first, conflist });
  assert.deepEqual(await readdir(join(first.runDir, 'exec')).catch(() => []), []);
  assert.deepEqual(await readdir(join(first.runDir, 'stream')).catch(() => []), []);
});
