import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { call, containerConfig, logLines, makeCriWorld, podConfig, type CriWorld } from '../helpers/cri-world.js';
import { eventually } from '../helpers/wait.js';

let w: CriWorld;
let pod: string;
let podLogDir: string;
let denyChmod: string;

before(async () => {
  w = await makeCriWorld();
  const config = podConfig('seccomp', w.logDir);
  podLogDir = config!.log_directory!;
  pod = (await call(w.rt, 'RunPodSandbox', { config, runtime_handler: '' })).pod_sandbox_id;
  // critest's profile: everything allowed but the chmod family.
  denyChmod = join(w.logDir, 'deny-chmod.json');
  await writeFile(denyChmod, JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat', 'fchmodat2'], action: 'SCMP_ACT_ERRNO' }],
  }));
});

after(async () => {
  await w?.cleanup();
});

const seccomp = (profile: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ linux: { security_context: { seccomp: profile, ...extra } } });

async function run(podId: string, name: string, args: string[], extra: Record<string, unknown>): Promise<string> {
  const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: podId, config: containerConfig(name, w.image, { args, extra }) })).container_id;
  await call(w.rt, 'StartContainer', { container_id: id });
  return id;
}

const exec = (id: string, cmd: string[]) => call(w.rt, 'ExecSync', { container_id: id, cmd, timeout: 10 });

test('Localhost profile: chmod is refused in the container\'s first process and in ExecSync', async () => {
  const id = await run(pod, 'localhost', ['sh', '-c', 'chmod 400 /; echo "chmod=$?"; exec sleep 600'], seccomp({ profile_type: 'Localhost', localhost_ref: denyChmod }));
  const lines = await eventually(async () => {
    const l = logLines(join(podLogDir, 'localhost.log'), 'stdout');
    return l.length > 0 ? l : undefined;
  }, 15_000, 'the first process to report');
  assert.deepEqual(lines, ['chmod=1']);
  const r = await exec(id, ['chmod', '400', '/']);
  assert.notEqual(r.exit_code, 0);
  assert.match(r.stderr.toString(), /Operation not permitted/);
  assert.match((await exec(id, ['grep', 'Seccomp:', '/proc/self/status'])).stdout.toString(), /Seccomp:\s+2/);
  // Everything else still works, as the container's user and in its working directory.
  const ok = await exec(id, ['sh', '-c', 'echo "$(id -u) $(pwd)"; ls / >/dev/null && echo listed']);
  assert.equal(ok.exit_code, 0, ok.stderr.toString());
  assert.equal(ok.stdout.toString(), '0 /work\nlisted\n');
  const missing = await exec(id, ['no-such-command']);
  assert.equal(missing.exit_code, 127);
  assert.match(missing.stderr.toString(), /no-such-command: executable file not found in \$PATH/);
});

test('Localhost profile refusing sethostname holds even with CAP_SYS_ADMIN', async () => {
  const profile = join(w.logDir, 'deny-sethostname.json');
  await writeFile(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['sethostname'], action: 'SCMP_ACT_ERRNO' }] }));
  const id = await run(pod, 'hostname', ['sleep', '600'], seccomp({ profile_type: 'Localhost', localhost_ref: profile }, { capabilities: { add_capabilities: ['SYS_ADMIN'] } }));
  const r = await exec(id, ['hostname', 'ANewHostName']);
  assert.notEqual(r.exit_code, 0);
  assert.match(r.stderr.toString(), /Operation not permitted/);
});

test('RuntimeDefault: filter mode 2 in ExecSync, ordinary commands work, mount is refused', async () => {
  const id = await run(pod, 'default', ['sh', '-c', 'grep Seccomp: /proc/self/status; exec sleep 600'], seccomp({ profile_type: 'RuntimeDefault' }));
  const first = await eventually(async () => logLines(join(podLogDir, 'default.log'), 'stdout')[0], 15_000, 'the first process to report');
  assert.match(first, /Seccomp:\s+2/);
  assert.match((await exec(id, ['grep', 'ecc', '/proc/self/status'])).stdout.toString(), /Seccomp:\t2/);
  const ok = await exec(id, ['sh', '-c', 'ls / >/dev/null && sleep 0.1 && (echo sub-shell) && date +%Y >/dev/null && echo done']);
  assert.equal(ok.exit_code, 0, ok.stderr.toString());
  assert.equal(ok.stdout.toString(), 'sub-shell\ndone\n');
  const mount = await exec(id, ['mount', '-t', 'tmpfs', 'none', '/tmp']);
  assert.notEqual(mount.exit_code, 0);
});

test('the exec helper reaches a container with a read-only rootfs', async () => {
  const id = await run(pod, 'readonly', ['sleep', '600'], seccomp({ profile_type: 'RuntimeDefault' }, { readonly_rootfs: true }));
  const r = await exec(id, ['sh', '-c', 'grep Seccomp: /proc/self/status; touch /x 2>/dev/null || echo read-only']);
  assert.equal(r.exit_code, 0, r.stderr.toString());
  assert.match(r.stdout.toString(), /Seccomp:\s+2\nread-only\n/);
});

test('a non-root exec without CAP_SYS_ADMIN gets its filter too (after no_new_privs)', async () => {
  const id = await run(pod, 'nonroot', ['sleep', '600'], seccomp({ profile_type: 'Localhost', localhost_ref: denyChmod }, { run_as_user: { value: '1234' } }));
  const r = await exec(id, ['sh', '-c', 'id -u; grep Seccomp: /proc/self/status; touch /tmp/mine && chmod 600 /tmp/mine']);
  assert.notEqual(r.exit_code, 0);
  // The file is the user's own: only the filter refuses the chmod.
  assert.match(r.stdout.toString(), /^1234\nSeccomp:\s+2\n$/);
  assert.match(r.stderr.toString(), /chmod.*Operation not permitted/);
});

test('Unconfined and privileged containers are not filtered', async () => {
  const plain = await run(pod, 'unconfined', ['sleep', '600'], seccomp({ profile_type: 'Unconfined' }));
  assert.match((await exec(plain, ['grep', 'Seccomp:', '/proc/self/status'])).stdout.toString(), /Seccomp:\s+0/);
  const config = podConfig('privileged', w.logDir, { linux: { security_context: { privileged: true } } });
  const privPod = (await call(w.rt, 'RunPodSandbox', { config, runtime_handler: '' })).pod_sandbox_id;
  const priv = await run(privPod, 'privileged', ['sleep', '600'], seccomp({ profile_type: 'RuntimeDefault' }, { privileged: true }));
  assert.match((await exec(priv, ['grep', 'Seccomp:', '/proc/self/status'])).stdout.toString(), /Seccomp:\s+0/);
  await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: privPod });
  await call(w.rt, 'RemovePodSandbox', { pod_sandbox_id: privPod });
});
