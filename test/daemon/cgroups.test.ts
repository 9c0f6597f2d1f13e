// Pod cgroups over the real daemon's socket, driven as kubelet would: the
// pod's parent cgroup made beforehand with its limit, sandboxes placed
// under it, container limits summed into the sandbox cgroup, an OOM
// reported as OOMKilled/137, CPU quota held, and nothing left in any
// hierarchy after removal, even after a SIGKILLed daemon.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon, testConflist, type TestDaemon, removeAllPods, waitFor } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { allRoots, controllerRoot, readLayout, type CgroupLayout } from '../../runtime/cgroups/index.js';

const INDEX = 41;
const MIB = 1024 * 1024;
/** The daemon-wide parent of this test's daemon: its own, so no other test's sweep meets it. */
const DAEMON_PARENT = `gvcri-e2e-cg-${process.pid}`;
/** Stands in for kubelet's /kubepods/burstable. */
const KUBE_PARENT = `gvcri-e2e-kube-${process.pid}`;

let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let layout: CgroupLayout;
let memRoot: string;
let cpuacctRoot: string;

const sandboxPath = (parent: string, podId: string): string => `${parent}/${podId}`;

function podConfig(name: string, cgroupParent?: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'cgroups', attempt: 0 }, hostname: name, linux: cgroupParent ? { cgroup_parent: cgroupParent } : {} };
}

async function runPod(name: string, cgroupParent?: string): Promise<string> {
  return (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig(name, cgroupParent) })).pod_sandbox_id;
}

async function runContainer(pod: string, podName: string, name: string, command: string[], linux: Record<string, unknown> = {}, cgroupParent?: string): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command, linux: { resources: linux } };
  const { container_id } = await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig(podName, cgroupParent) });
  await d.call('runtime', 'StartContainer', { container_id });
  return container_id;
}

interface Status { state: string; exit_code: number; reason: string }
const status = async (id: string): Promise<Status> => (await d.call<{ status: Status }>('runtime', 'ContainerStatus', { container_id: id })).status;

/** Makes a kubelet-style pod parent in every hierarchy, with a memory limit. */
async function makeKubeParent(name: string, memoryBytes: number): Promise<string> {
  const path = `/${KUBE_PARENT}/${name}`;
  for (const root of allRoots(layout)) await mkdir(join(root, path), { recursive: true });
  await writeFile(join(memRoot, path, 'memory.limit_in_bytes'), String(memoryBytes));
  return path;
}

const memoryLimit = async (path: string): Promise<number> => Number((await readFile(join(memRoot, path, 'memory.limit_in_bytes'), 'utf8')).trim());
const cpuShares = async (path: string): Promise<string> => (await readFile(join(controllerRoot(layout, 'cpu')!, path, 'cpu.shares'), 'utf8')).trim();
const cpuUsageNs = async (path: string): Promise<bigint> => BigInt((await readFile(join(cpuacctRoot, path, 'cpuacct.usage'), 'utf8')).trim());

/** Host processes of runsc for `id` (sentry "runsc-sandbox", gofers "runsc-gofer"): their pids. */
async function runscProcesses(id: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (/^runsc-(sandbox|gofer)\0/.test(cmd) && cmd.includes(id)) out.push(Number(p));
  }
  return out;
}

/** The memory-hierarchy cgroup of a process. */
async function memoryCgroupOf(pid: number): Promise<string> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  return lines.find((l) => /^\d+:memory:/.test(l))!.replace(/^\d+:memory:/, '');
}

/** Every directory left under `top` in any hierarchy. */
async function leftovers(top: string): Promise<string[]> {
  const out: string[] = [];
  for (const root of allRoots(layout)) {
    const dir = join(root, top);
    if (!(await stat(dir).catch(() => undefined))) continue;
    for (const e of await readdir(dir, { withFileTypes: true })) if (e.isDirectory()) out.push(join(dir, e.name));
  }
  return out;
}

before(async () => {
  const l = await readLayout();
  if (l?.version !== 1) throw new Error('these tests need cgroup v1, as this project\'s machines have');
  layout = l;
  memRoot = controllerRoot(layout, 'memory')!;
  cpuacctRoot = controllerRoot(layout, 'cpuacct')!;
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/cgroups', {
    layers: [{ entries: busyboxEntries([...BUSYBOX_APPLETS, 'tail']) }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  })).ref;
  d = await startDaemon({ conflist: testConflist(INDEX), args: ['--cgroup-parent', DAEMON_PARENT] });
  await d.call('image', 'PullImage', { image: { image } });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  for (const root of layout ? allRoots(layout) : []) {
    for (const dir of await readdir(join(root, KUBE_PARENT)).catch(() => [] as string[])) await rmdir(join(root, KUBE_PARENT, dir)).catch(() => undefined);
    await rmdir(join(root, KUBE_PARENT)).catch(() => undefined);
    await rmdir(join(root, DAEMON_PARENT)).catch(() => undefined);
  }
});

test('RuntimeConfig reports the configured driver', async () => {
  const r = await d.call<{ linux: { cgroup_driver: string } }>('runtime', 'RuntimeConfig', {});
  assert.equal(r.linux.cgroup_driver, 'CGROUPFS');
});

test('placement: sentry and every gofer in <cgroup_parent>/<pod id>, or under the daemon-wide parent; nothing at the root', async () => {
  const parent = await makeKubeParent('pod-place', 512 * MIB);
  const pod = await runPod('place', parent);
  const c = await runContainer(pod, 'place', 'sleeper', ['sleep', '3600'], {}, parent);
  const expected = sandboxPath(parent, pod);
  const procs = [...(await runscProcesses(pod)), ...(await runscProcesses(c))];
  // The sentry, the pod's gofer and the container's gofer.
  assert.ok(procs.length >= 3, `runsc processes of the pod: ${procs.join(' ')}`);
  for (const pid of procs) assert.equal(await memoryCgroupOf(pid), expected, `pid ${pid}`);
  for (const root of allRoots(layout)) {
    assert.ok((await stat(join(root, expected))).isDirectory(), `${root}${expected}`);
    await assert.rejects(stat(join(root, pod)), { code: 'ENOENT' });
  }

  // No container asked for CPU weight: the pod has the least, as kubelet gives a BestEffort pod.
  assert.equal(await cpuShares(expected), '2');

  const free = await runPod('no-parent');
  for (const pid of await runscProcesses(free)) assert.equal(await memoryCgroupOf(pid), `/${DAEMON_PARENT}/${free}`);
  assert.equal(await cpuShares(`/${DAEMON_PARENT}/${free}`), '2', 'a sandbox boots with the least CPU weight');

  for (const id of [pod, free]) await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: id });
  assert.deepEqual(await leftovers(parent), []);
  assert.deepEqual(await leftovers(DAEMON_PARENT), []);
  for (const root of allRoots(layout)) await assert.rejects(stat(join(root, DAEMON_PARENT)), { code: 'ENOENT' }, 'the daemon-wide parent goes with its last pod');
});

test('OOM: a 64 MiB container running tail /dev/zero in a 256 MiB pod parent ends OOMKilled/137; a neighbour pod keeps running', async () => {
  const parent = await makeKubeParent('pod-oom', 256 * MIB);
  const neighbourParent = await makeKubeParent('pod-neighbour', 256 * MIB);
  const neighbour = await runPod('neighbour', neighbourParent);
  const calm = await runContainer(neighbour, 'neighbour', 'calm', ['sleep', '3600'], { memory_limit_in_bytes: 64 * MIB }, neighbourParent);
  const pod = await runPod('oom', parent);
  const hog = await runContainer(pod, 'oom', 'hog', ['tail', '/dev/zero'], { memory_limit_in_bytes: 64 * MIB }, parent);
  // The sandbox carries its container's limit plus the default 64 MiB overhead.
  assert.equal(await memoryLimit(sandboxPath(parent, pod)), 128 * MIB);
  const end = await waitFor(async () => {
    const s = await status(hog);
    return s.state === 'CONTAINER_EXITED' ? s : undefined;
  }, 120_000, 'the hog to be OOM-killed');
  assert.deepEqual({ exit_code: end.exit_code, reason: end.reason }, { exit_code: 137, reason: 'OOMKilled' });
  assert.equal((await status(calm)).state, 'CONTAINER_RUNNING');
  const r = await d.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: calm, cmd: ['echo', 'alive'], timeout: 20 });
  assert.equal(r.stdout.toString(), 'alive\n');
  for (const id of [pod, neighbour]) await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: id });
  assert.deepEqual(await leftovers(parent), []);
});

test('CPU: a pod limited to 0.5 CPU that spins uses at most ~0.55 CPU over 5 s (cgroup usage counter)', async () => {
  const parent = await makeKubeParent('pod-cpu', 512 * MIB);
  const pod = await runPod('cpu', parent);
  await runContainer(pod, 'cpu', 'spin', ['sh', '-c', 'while :; do :; done'], { cpu_period: 100_000, cpu_quota: 50_000, cpu_shares: 512 }, parent);
  const path = sandboxPath(parent, pod);
  assert.equal((await readFile(join(controllerRoot(layout, 'cpu')!, path, 'cpu.cfs_quota_us'), 'utf8')).trim(), '50000');
  assert.equal(await cpuShares(path), '512');
  // Spinning first: the window starts once usage climbs.
  const first = await cpuUsageNs(path);
  await waitFor(async () => (await cpuUsageNs(path)) - first > 200_000_000n, 30_000, 'the spinner to use CPU');
  const t0 = process.hrtime.bigint();
  const u0 = await cpuUsageNs(path);
  // A measuring window, not a wait for a condition: sample until 5 s of wall time have passed.
  const t1 = await waitFor(async () => {
    const now = process.hrtime.bigint();
    return now - t0 >= 5_000_000_000n ? now : undefined;
  }, 10_000, 'the 5 s window');
  const u1 = await cpuUsageNs(path);
  const cpus = Number(u1 - u0) / Number(t1 - t0);
  assert.ok(cpus <= 0.55, `used ${cpus.toFixed(3)} CPU`);
  assert.ok(cpus >= 0.3, `the spinner ran (${cpus.toFixed(3)} CPU)`);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  assert.deepEqual(await leftovers(parent), []);
});

test('UpdateContainerResources raises the memory limit live; RemoveContainer lowers it; a pod overhead from UpdatePodSandboxResources replaces the configured one', async () => {
  const parent = await makeKubeParent('pod-update', 512 * MIB);
  const pod = await runPod('update', parent);
  const a = await runContainer(pod, 'update', 'a', ['sleep', '3600'], { memory_limit_in_bytes: 64 * MIB }, parent);
  const b = await runContainer(pod, 'update', 'b', ['sleep', '3600'], { memory_limit_in_bytes: 32 * MIB }, parent);
  const path = sandboxPath(parent, pod);
  assert.equal(await memoryLimit(path), (64 + 32 + 64) * MIB);
  await d.call('runtime', 'UpdateContainerResources', { container_id: a, linux: { memory_limit_in_bytes: 192 * MIB } });
  assert.equal(await memoryLimit(path), (192 + 32 + 64) * MIB);
  assert.equal((await status(a)).state, 'CONTAINER_RUNNING');
  const got = await d.call<{ status: { resources: { linux: { memory_limit_in_bytes: string } } } }>('runtime', 'ContainerStatus', { container_id: a });
  assert.equal(Number(got.status.resources.linux.memory_limit_in_bytes), 192 * MIB);
  await d.call('runtime', 'RemoveContainer', { container_id: b });
  assert.equal(await memoryLimit(path), (192 + 64) * MIB);
  // A RuntimeClass overhead announced for the pod replaces the configured one.
  await d.call('runtime', 'UpdatePodSandboxResources', { pod_sandbox_id: pod, overhead: { memory_limit_in_bytes: 16 * MIB } });
  assert.equal(await memoryLimit(path), (192 + 16) * MIB);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  assert.deepEqual(await leftovers(parent), []);
});

test('a SIGKILLed daemon: the restarted one keeps the live pod\'s cgroup, and removal then leaves nothing in any hierarchy', async () => {
  const parent = await makeKubeParent('pod-kill', 512 * MIB);
  const pod = await runPod('kill', parent);
  await runContainer(pod, 'kill', 'sleeper', ['sleep', '3600'], { memory_limit_in_bytes: 64 * MIB }, parent);
  const free = await runPod('kill-free');
  d.proc.kill('SIGKILL');
  await waitFor(async () => d.proc.exitCode !== null || d.proc.signalCode !== null, 10_000, 'the daemon to die');
  d = await startDaemon({ reuse: d, conflist: testConflist(INDEX), args: ['--cgroup-parent', DAEMON_PARENT] });
  const path = sandboxPath(parent, pod);
  assert.equal(await memoryLimit(path), 128 * MIB, 'the live pod\'s cgroup and limit survive the restart');
  for (const pid of await runscProcesses(pod)) assert.equal(await memoryCgroupOf(pid), path);
  for (const id of [pod, free]) await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: id });
  assert.deepEqual(await leftovers(parent), []);
  for (const root of allRoots(layout)) {
    await assert.rejects(stat(join(root, DAEMON_PARENT)), { code: 'ENOENT' });
    await assert.rejects(stat(join(root, pod)), { code: 'ENOENT' });
    await assert.rejects(stat(join(root, free)), { code: 'ENOENT' });
  }
});
