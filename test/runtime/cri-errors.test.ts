import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { call, containerConfig, makeCriWorld, podConfig, type CriWorld } from '../helpers/cri-world.js';

const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const FAILED_PRECONDITION = 9;

let w: CriWorld;
let pod: string;

before(async () => {
  w = await makeCriWorld();
  pod = (await call(w.rt, 'RunPodSandbox', { config: podConfig('errs', w.logDir), runtime_handler: '' })).pod_sandbox_id;
});

after(async () => {
  await w?.cleanup();
});

const rejects = (p: Promise<unknown>, code: number, message: RegExp): Promise<void> =>
  assert.rejects(p, (err: { code: number; message: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });

/** Records and per-container dirs, to prove a failed call left nothing behind. */
async function footprint(): Promise<{ pods: string[]; containers: string[]; ctrDirs: string[] }> {
  return {
    pods: (await readdir(join(w.stateDir, 'pods'))).sort(),
    containers: (await readdir(join(w.stateDir, 'containers'))).sort(),
    ctrDirs: (await readdir(join(w.runDir, 'containers')).catch(() => [] as string[])).sort(),
  };
}

test('RunPodSandbox rejects bad requests naming the field, and duplicates', async () => {
  const start = await footprint();
  const netnsBefore = (await w.leftovers()).netns;
  for (const field of ['name', 'uid', 'namespace'] as const) {
    const config = podConfig('bad', w.logDir);
    (config!.metadata as Record<string, unknown>)[field] = '';
    await rejects(call(w.rt, 'RunPodSandbox', { config, runtime_handler: '' }), INVALID_ARGUMENT, new RegExp(`config\\.metadata\\.${field}`));
  }
  await rejects(call(w.rt, 'RunPodSandbox', { config: null, runtime_handler: '' }), INVALID_ARGUMENT, /config must be set/);
  await rejects(call(w.rt, 'RunPodSandbox', { config: podConfig('h', w.logDir), runtime_handler: 'kata' }), NOT_FOUND, /runtime handler "kata"/);
  await rejects(call(w.rt, 'RunPodSandbox', { config: podConfig('errs', w.logDir), runtime_handler: '' }), ALREADY_EXISTS, new RegExp(`test/errs.*${pod}`));
  // Fails after CNI ADD (the hostname is checked when the pod files are written): all of it is undone.
  await rejects(call(w.rt, 'RunPodSandbox', { config: podConfig('badhost', w.logDir, { hostname: 'not_a_host!' }), runtime_handler: '' }), INVALID_ARGUMENT, /hostname/);
  assert.deepEqual(await footprint(), start);
  assert.deepEqual((await w.leftovers()).netns, netnsBefore);
  assert.equal((await w.net.counts()).ipamAllocations, 1);
});

test('CreateContainer: unknown pod, missing image, invalid config, duplicates; nothing half-made', async () => {
  const start = await footprint();
  await rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: 'a'.repeat(64), config: containerConfig('c', w.image) }), NOT_FOUND, /pod sandbox "a+" not found/);
  await rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', '127.0.0.1:1/nope:v1') }), NOT_FOUND, /image "127\.0\.0\.1:1\/nope:v1" not found/);
  const noName = containerConfig('', w.image);
  await rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: noName }), INVALID_ARGUMENT, /config\.metadata\.name/);
  await rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', '') }), INVALID_ARGUMENT, /config\.image\.image/);
  await rejects(
    call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', w.image, { extra: { devices: [{ container_path: '/dev/fuse', host_path: '/dev/fuse', permissions: 'rwm' }] } }) }),
    INVALID_ARGUMENT,
    /config\.devices: gVisor does not pass host devices/,
  );
  await rejects(
    call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', w.image, { extra: { mounts: [{ container_path: 'rel', host_path: '/tmp' }] } }) }),
    INVALID_ARGUMENT,
    /config\.mounts\[0\]\.container_path/,
  );
  await rejects(
    call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', w.image, { extra: { linux: { security_context: { run_as_username: 'ghost' } } } }) }),
    INVALID_ARGUMENT,
    /run_as_username: user "ghost"/,
  );
  await rejects(
    call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', w.image, { extra: { linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: '/nonexistent/profile.json' } } } } }) }),
    INVALID_ARGUMENT,
    /seccomp profile \/nonexistent\/profile\.json/,
  );
  await rejects(
    call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('c', w.image, { extra: { linux: { security_context: { privileged: true } } } }) }),
    INVALID_ARGUMENT,
    /privileged pod sandbox/,
  );
  assert.deepEqual(await footprint(), start);

  const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('dup', w.image) })).container_id;
  await rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('dup', w.image) }), ALREADY_EXISTS, /dup/);
  await call(w.rt, 'StartContainer', { container_id: id });
  await rejects(call(w.rt, 'StartContainer', { container_id: id }), FAILED_PRECONDITION, /running/);
  await call(w.rt, 'RemoveContainer', { container_id: id });
  await call(w.rt, 'RemoveContainer', { container_id: id });
  assert.deepEqual(await footprint(), start);
});

test('unknown ids: NOT_FOUND for status and actions, success for stop/remove of pods and containers', async () => {
  const ghost = 'b'.repeat(64);
  await rejects(call(w.rt, 'PodSandboxStatus', { pod_sandbox_id: ghost, verbose: false }), NOT_FOUND, /pod sandbox "b+" not found/);
  await rejects(call(w.rt, 'ContainerStatus', { container_id: ghost, verbose: false }), NOT_FOUND, /container "b+" not found/);
  await rejects(call(w.rt, 'StartContainer', { container_id: ghost }), NOT_FOUND, /not found/);
  await rejects(call(w.rt, 'ExecSync', { container_id: ghost, cmd: ['true'], timeout: 1 }), NOT_FOUND, /not found/);
  await rejects(call(w.rt, 'ReopenContainerLog', { container_id: ghost }), NOT_FOUND, /not found/);
  await rejects(call(w.rt, 'UpdateContainerResources', { container_id: ghost, linux: {} }), NOT_FOUND, /not found/);
  await rejects(call(w.rt, 'StartContainer', { container_id: '' }), INVALID_ARGUMENT, /container_id must be set/);
  await call(w.rt, 'RemoveContainer', { container_id: ghost });
  await call(w.rt, 'StopContainer', { container_id: ghost, timeout: 1 });
  await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: ghost });
  await call(w.rt, 'RemovePodSandbox', { pod_sandbox_id: ghost });
});

test('five pods created and removed leave no netns, runsc state, mounts, IPs or veths', async () => {
  await call(w.rt, 'RemovePodSandbox', { pod_sandbox_id: pod });
  const t0 = Date.now();
  const ids = await Promise.all([1, 2, 3, 4, 5].map(async (i) => {
    const id = (await call(w.rt, 'RunPodSandbox', { config: podConfig(`p${i}`, w.logDir), runtime_handler: '' })).pod_sandbox_id;
    const c = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: id, config: containerConfig('app', w.image) })).container_id;
    await call(w.rt, 'StartContainer', { container_id: c });
    return id;
  }));
  console.log(`# 5 pods with a container each: ${Date.now() - t0} ms`);
  assert.equal((await call(w.rt, 'ListPodSandbox', { filter: { state: { state: 'SANDBOX_READY' } } })).items.length, 5);
  assert.equal((await w.net.counts()).veths, 5);
  const t1 = Date.now();
  await Promise.all(ids.map(async (id) => {
    await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: id });
    await call(w.rt, 'RemovePodSandbox', { pod_sandbox_id: id });
  }));
  console.log(`# stop+remove 5 pods: ${Date.now() - t1} ms`);
  assert.deepEqual(await w.leftovers(), { netns: [], runsc: [], mounts: [] });
  const counts = await w.net.counts();
  assert.deepEqual({ ...counts, iptablesRules: 0 }, { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  assert.deepEqual(await footprint(), { pods: [], containers: [], ctrDirs: [] });
  assert.deepEqual(await readdir(join(w.runDir, 'pods')), []);
});
