// CheckpointContainer and the restore path end to end, over the socket of the real daemon:
// a counting container is checkpointed to a tar while it keeps counting, and a new pod
// created from that archive continues the count where the checkpoint left it.
import { test, after, afterEach, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { c as tarCreate, t as tarList, x as tarExtract } from 'tar';
import { startDaemon, testConflist, type TestDaemon, waitFor, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';

const INDEX = 17;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let ckptDir: string;

const COUNTER = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done'];

before(async () => {
  registry = await startRegistry();
  const pushed = await pushTestImage(registry.url, 'e2e/checkpoint', {
    layers: [{ entries: busyboxEntries([...new Set([...BUSYBOX_APPLETS, 'ifconfig'])]) }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  });
  image = pushed.ref;
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
  ckptDir = join(d.dir, 'checkpoints');
  await mkdir(ckptDir, { recursive: true });
});

afterEach(() => removeAllPods(d));

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
});

function podConfig(name: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name) };
}

async function runPod(name: string): Promise<string> {
  return (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig(name) })).pod_sandbox_id;
}

async function createContainer(pod: string, podName: string, name: string, img: string, extra: Record<string, unknown> = {}): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image: img }, log_path: `${name}.log`, ...extra };
  return (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig(podName) })).container_id;
}

interface Status { id: string; state: string; exit_code: number; reason: string; log_path: string; image: { image: string } }
const status = async (id: string): Promise<Status> => (await d.call<{ status: Status }>('runtime', 'ContainerStatus', { container_id: id })).status;

/** The numbers a counter wrote to its CRI log, in order. */
async function counted(logPath: string): Promise<number[]> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l.includes(' stdout F ')).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
}


const expectCode = (code: grpc.status, re: RegExp) => (err: grpc.ServiceError) => {
  assert.equal(err.code, code, err.details);
  assert.match(err.details, re);
  return true;
};

test('checkpoint and restore of a counting container', async (t) => {
  const podA = await runPod('count-a');
  const original = await createContainer(podA, 'count-a', 'counter', image, { command: COUNTER });
  await d.call('runtime', 'StartContainer', { container_id: original });
  const logA = (await status(original)).log_path;
  await waitFor(async () => ((await counted(logA)).length >= 5 ? true : undefined), 15_000, 'the counter to reach 5');

  const location = join(ckptDir, 'checkpoint-count-a_e2e-counter.tar');
  const before = (await counted(logA)).at(-1)!;
  await d.call('runtime', 'CheckpointContainer', { container_id: original, location, timeout: 60 });
  const afterCkpt = (await counted(logA)).at(-1)!;

  // The archive: manifest + runsc image, nothing left beside it.
  const entries: string[] = [];
  await tarList({ file: location, onentry: (e) => entries.push(e.path) });
  assert.ok(entries.includes('manifest.json'), entries.join(', '));
  assert.ok(entries.includes('checkpoint/checkpoint.img'), entries.join(', '));
  assert.deepEqual((await readdir(ckptDir)).sort(), ['checkpoint-count-a_e2e-counter.tar']);
  assert.equal((await stat(location)).mode & 0o777, 0o600);
  let manifest: Record<string, unknown> & { container: { name: string; image: string }; sandboxContainers: unknown[]; runscVersion: string } = { container: { name: '', image: '' }, sandboxContainers: [], runscVersion: '' };
  await tarList({
    file: location,
    onentry: (e) => {
      if (e.path !== 'manifest.json') return;
      const parts: Buffer[] = [];
      e.on('data', (c: Buffer) => parts.push(c));
      e.on('end', () => (manifest = JSON.parse(Buffer.concat(parts).toString())));
    },
  });
  assert.equal(manifest.format, 'gvisor-cri-checkpoint');
  assert.equal(manifest.container.name, 'counter');
  assert.equal(manifest.container.image, image);
  assert.equal(manifest.sandboxContainers.length, 1);
  assert.match(manifest.runscVersion, /runsc version/);

  // The original keeps counting (--leave-running).
  await waitFor(async () => ((await counted(logA)).at(-1)! > afterCkpt + 5 ? true : undefined), 15_000, 'the original to keep counting');
  assert.equal((await status(original)).state, 'CONTAINER_RUNNING');

  // Restore into a new pod: CreateContainer with the archive as image, then StartContainer.
  const podB = await runPod('count-b');
  // Another name in the new pod: runsc matches the checkpointed container by the name it had.
  const restored = await createContainer(podB, 'count-b', 'counter-restored', location);
  assert.equal((await status(restored)).state, 'CONTAINER_CREATED');
  await d.call('runtime', 'StartContainer', { container_id: restored });
  const st = await status(restored);
  assert.equal(st.state, 'CONTAINER_RUNNING');
  assert.equal(st.image.image, image);
  const logB = st.log_path;
  const resumed = await waitFor(async () => {
    const n = await counted(logB);
    return n.length >= 3 ? n : undefined;
  }, 20_000, 'the restored counter to print');
  // It continues from the checkpointed value, not from 1.
  t.diagnostic(`checkpoint taken between ${before} and ${afterCkpt}; restored counter printed ${resumed.join(',')}`);
  assert.ok(resumed[0]! >= before && resumed[0]! <= afterCkpt + 1, `restored counter started at ${resumed[0]}, checkpoint was taken between ${before} and ${afterCkpt}`);
  for (let i = 1; i < resumed.length; i++) assert.equal(resumed[i], resumed[i - 1]! + 1, `restored count ${resumed.join(',')}`);

  // It is a container of the new pod in every respect: listed, exec works, the new pod's IP.
  const listed = await d.call<{ containers: { id: string; pod_sandbox_id: string; state: string }[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: podB } });
  assert.deepEqual(listed.containers.map((c) => [c.id, c.state]), [[restored, 'CONTAINER_RUNNING']]);
  const ipB = (await d.call<{ status: { network: { ip: string } } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: podB })).status.network.ip;
  const ifc = await d.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: restored, cmd: ['ifconfig', 'eth0'], timeout: 20 });
  assert.equal(ifc.exit_code, 0);
  assert.match(ifc.stdout.toString(), new RegExp(`inet addr:${ipB.replaceAll('.', '\\.')}\\b`));

  // A daemon killed and restarted finds it again, and its log keeps flowing.
  d.proc.kill('SIGKILL');
  await d.stop();
  d = await startDaemon({ reuse: d, conflist: testConflist(INDEX) });
  assert.equal((await status(restored)).state, 'CONTAINER_RUNNING');
  const seen = (await counted(logB)).at(-1)!;
  await waitFor(async () => ((await counted(logB)).at(-1)! > seen + 3 ? true : undefined), 15_000, 'the restored counter to keep logging after a restart');

  // Stop and remove like any container.
  await d.call('runtime', 'StopContainer', { container_id: restored, timeout: 2 });
  assert.equal((await status(restored)).state, 'CONTAINER_EXITED');
  await d.call('runtime', 'RemoveContainer', { container_id: restored });
  await assert.rejects(status(restored), expectCode(grpc.status.NOT_FOUND, /not found/));
  assert.deepEqual(await readdir(join(d.stateDir, 'restore')), []);
  // The original was never disturbed.
  assert.equal((await status(original)).state, 'CONTAINER_RUNNING');
});

test('bad checkpoint and restore requests get clear statuses and leave nothing behind', async () => {
  const pod = await runPod('ckpt-bad');
  const ctr = await createContainer(pod, 'ckpt-bad', 'sleeper', image, { command: ['sleep', '3600'] });
  const location = join(ckptDir, 'bad.tar');

  await assert.rejects(d.call('runtime', 'CheckpointContainer', { container_id: 'f'.repeat(64), location }), expectCode(grpc.status.NOT_FOUND, /f{12}/));
  await assert.rejects(d.call('runtime', 'CheckpointContainer', { container_id: ctr, location: 'relative/bad.tar' }), expectCode(grpc.status.INVALID_ARGUMENT, /absolute/));
  await assert.rejects(d.call('runtime', 'CheckpointContainer', { container_id: ctr, location: '' }), expectCode(grpc.status.INVALID_ARGUMENT, /location/));
  await assert.rejects(d.call('runtime', 'CheckpointContainer', { container_id: ctr, location: join(ckptDir, 'no-such-dir', 'x.tar') }), expectCode(grpc.status.INVALID_ARGUMENT, /does not exist/));
  // Created, not yet running.
  await assert.rejects(d.call('runtime', 'CheckpointContainer', { container_id: ctr, location }), expectCode(grpc.status.FAILED_PRECONDITION, /created, not running/));
  assert.deepEqual(await readdir(ckptDir).then((n) => n.filter((x) => x.startsWith('bad') || x.startsWith('.'))), []);

  // Restore from something that is not there, or is not a checkpoint archive.
  const empty = await runPod('restore-bad');
  await assert.rejects(createContainer(empty, 'restore-bad', 'c', join(ckptDir, 'missing.tar')), expectCode(grpc.status.NOT_FOUND, /missing\.tar/));
  const notArchive = join(d.dir, 'not-a-checkpoint.tar');
  await writeFile(notArchive, 'just text\n');
  await assert.rejects(createContainer(empty, 'restore-bad', 'c', notArchive), expectCode(grpc.status.INVALID_ARGUMENT, /not-a-checkpoint\.tar/));
  const listed = await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: empty } });
  assert.deepEqual(listed.containers, []);
  assert.deepEqual(await readdir(join(d.stateDir, 'restore')).catch(() => []), []);

  // A restore runsc fails (a damaged image): the container exits with StartError, the
  // pod gets a fresh sandbox of its own and takes ordinary containers again.
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  await d.call('runtime', 'CheckpointContainer', { container_id: ctr, location });
  const unpacked = join(d.dir, 'damaged');
  await mkdir(unpacked);
  await tarExtract({ file: location, cwd: unpacked });
  const img = join(unpacked, 'checkpoint', 'checkpoint.img');
  await truncate(img, Math.floor((await stat(img)).size / 2));
  // Digests that match the damage: the archive passes verification, and runsc is what fails it.
  const manifestPath = join(unpacked, 'manifest.json');
  const m = JSON.parse(await readFile(manifestPath, 'utf8')) as { imageDigests: Record<string, string> };
  m.imageDigests['checkpoint.img'] = `sha256:${createHash('sha256').update(await readFile(img)).digest('hex')}`;
  await writeFile(manifestPath, JSON.stringify(m));
  const damaged = join(ckptDir, 'damaged.tar');
  await tarCreate({ file: damaged, cwd: unpacked }, ['manifest.json', 'checkpoint']);
  const broken = await createContainer(empty, 'restore-bad', 'broken', damaged);
  await assert.rejects(d.call('runtime', 'StartContainer', { container_id: broken }), expectCode(grpc.status.INTERNAL, /restore/));
  const after = await status(broken);
  assert.equal(after.state, 'CONTAINER_EXITED');
  assert.equal(after.reason, 'StartError');
  await d.call('runtime', 'RemoveContainer', { container_id: broken });
  assert.deepEqual(await readdir(join(d.stateDir, 'restore')), []);
  const podSt = await d.call<{ status: { state: string } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: empty });
  assert.equal(podSt.status.state, 'SANDBOX_READY');
  const ok = await createContainer(empty, 'restore-bad', 'ok', image, { command: ['sleep', '3600'] });
  await d.call('runtime', 'StartContainer', { container_id: ok });
  assert.equal((await status(ok)).state, 'CONTAINER_RUNNING');
  const ping = await d.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: ok, cmd: ['ifconfig', 'eth0'], timeout: 20 });
  assert.match(ping.stdout.toString(), /inet addr:10\./);
});
