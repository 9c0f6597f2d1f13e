// Calls that end before their work does (deadline passed, as kubelet's runtime-request-timeout
// makes them): RunPodSandbox and CreateContainer stop (a CNI plugin running is killed) and roll back everything they made;
// StopContainer stops waiting out a long grace period instead of holding the container's lock.
// The slow steps are made slow on purpose (a CNI plugin that sleeps, a seccomp profile read from
// a FIFO), so that the deadline always falls in the middle of the work.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { execa } from 'execa';
import { startDaemon, type TestDaemon, removeAllPods, waitFor, testConflist } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { writeFakePlugin } from '../helpers/network-fake-plugin.js';

const CNI_SLEEP_MS = 4000;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let pluginDir: string;
let cniLog: string;

before(async () => {
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/call-abort', { layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  pluginDir = await mkdtemp(join(tmpdir(), 'gvcri-slow-cni-'));
  cniLog = join(pluginDir, 'calls.log');
  await writeFakePlugin(pluginDir, 'slow');
  const conflist = testConflist('call-abort', [{ type: 'slow', sleepMs: CNI_SLEEP_MS, logFile: cniLog }]);
  d = await startDaemon({ conflist, args: ['--cni-bin-dir', `${pluginDir}:/usr/lib/cni:/opt/cni/bin`] });
  await d.call('image', 'PullImage', { image: { image } });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  if (pluginDir) await rm(pluginDir, { recursive: true, force: true });
});

const podConfig = (name: string) => ({ metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name) });
// grpc-js clients cancel the stream at their deadline, so the daemon may see either end first.
const ENDED = (what: string): RegExp => new RegExp(`${what}[^"]*: (deadline exceeded|call cancelled by the client)`);
const deadlineExceeded = (err: grpc.ServiceError): boolean => err.code === grpc.status.DEADLINE_EXCEEDED;
const listPods = async (): Promise<{ id: string }[]> => (await d.call<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', {})).items;
const cniCalls = async (command: string): Promise<number> => (await readFile(cniLog, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes(`"command":"${command}"`)).length;
const runscStates = async (): Promise<string> => (await execa('runsc', ['--root', join(d.runDir, 'runsc'), 'list', '--quiet'])).stdout.trim();

test('RunPodSandbox whose deadline passes during CNI ADD rolls back: no pod, no netns, no network, no runsc state', async () => {
  const addsBefore = await cniCalls('ADD');
  await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: podConfig('late-pod') }, 1000), deadlineExceeded);
  // The work goes on after the client gave up; wait for it to have undone itself.
  await waitFor(async () => ((await cniCalls('DEL')) > 0 ? true : undefined), CNI_SLEEP_MS * 3, 'CNI DEL of the abandoned pod');
  assert.equal(await cniCalls('ADD'), addsBefore + 1, 'the network was being set up when the deadline passed');
  await waitFor(async () => ((await listPods()).length === 0 && (await readdir(join(d.stateDir, 'pods'))).length === 0 ? true : undefined), 15_000, 'the pod record to be gone');
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), []);
  assert.equal(await runscStates(), '');
  // The plugin itself was stopped at the deadline (containerd too bounds CNI by the call), not left to run out its sleep.
  assert.match(d.output(), /run pod sandbox e2e\/late-pod: .*CNI ADD plugin \\"slow\\": stopped: (deadline exceeded|call cancelled by the client)/);

  // The same pod can be made afterwards: nothing reserved its name.
  const id = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('late-pod') })).pod_sandbox_id;
  assert.ok(id);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: id });
});

test('CreateContainer whose deadline passes mid-way rolls back: no container, no files, no runsc state', async () => {
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('late-ctr') })).pod_sandbox_id;
  // The profile is a FIFO: reading it blocks CreateContainer until the test writes it, after the deadline.
  const fifo = join(d.dir, 'profile.fifo');
  await execa('mkfifo', [fifo]);
  const config = { metadata: { name: 'c', attempt: 0 }, image: { image }, log_path: 'c.log', linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: fifo } } } };
  await assert.rejects(d.call('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('late-ctr') }, 1000), deadlineExceeded);
  const writer = await open(fifo, 'w');
  await writer.writeFile(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' }));
  await writer.close();
  await waitFor(async () => (ENDED('create container c in pod e2e/late-ctr').test(d.output()) ? true : undefined), 15_000, 'the abandoned create to end');
  const listed = await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: pod } });
  assert.deepEqual(listed.containers, []);
  assert.deepEqual(await readdir(join(d.runDir, 'containers')).catch(() => []), []);
  assert.equal(await runscStates(), pod);

  // The name is free again.
  const plain = { metadata: { name: 'c', attempt: 0 }, image: { image }, log_path: 'c.log' };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config: plain, sandbox_config: podConfig('late-ctr') })).container_id;
  assert.ok(ctr);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
});

test('StopContainer whose deadline passes during the grace period lets go of the container; a retry kills it', async () => {
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('late-stop') })).pod_sandbox_id;
  const config = { metadata: { name: 'stubborn', attempt: 0 }, image: { image }, command: ['sh', '-c', "trap '' TERM; while true; do sleep 1; done"], log_path: 'stubborn.log' };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('late-stop') })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  await assert.rejects(d.call('runtime', 'StopContainer', { container_id: ctr, timeout: 600 }, 1500), deadlineExceeded);
  // Had the first stop kept waiting (600 s) it would hold the container's lock and this call could not finish in its bound.
  await d.call('runtime', 'StopContainer', { container_id: ctr, timeout: 0 }, 30_000);
  const st = await d.call<{ status: { state: string; exit_code: number } }>('runtime', 'ContainerStatus', { container_id: ctr });
  assert.equal(st.status.state, 'CONTAINER_EXITED');
  assert.equal(st.status.exit_code, 137);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
});
