// The checkpoint archive format and the move of a checkpointed spec into a new pod,
// without runsc: archives are built by hand here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { c as tarCreate, t as tarList } from 'tar';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { isCheckpointArchiveRef, readCheckpointArchive, restoreContainerSpec, writeCheckpointArchive, type CheckpointManifest } from '../../runtime/checkpoint/archive.js';
import { buildContainerSpec } from '../../runtime/spec/oci-spec.js';
import { emptyResources } from '../../runtime/records/store.js';
import { podRoutes } from '../../network/cni-result.js';
import { SECCOMP_HELPER_PATH } from '../../runtime/seccomp/exec-helper.js';

const dir = await mkdtemp(join(tmpdir(), 'gvcri-ckpt-unit-'));
after(() => rm(dir, { recursive: true, force: true }));

const oldEtc = { hosts: '/run/old/etc/hosts', resolvConf: '/run/old/etc/resolv.conf', hostname: '/run/old/etc/hostname' };
const newEtc = { hosts: '/run/new/etc/hosts', resolvConf: '/run/new/etc/resolv.conf', hostname: '/run/new/etc/hostname' };

const savedSpec = buildContainerSpec({
  sandboxId: 'a'.repeat(64),
  rootfsDir: '/old/rootfs',
  readonlyRootfs: false,
  args: ['sh', '-c', 'count'],
  env: ['A=1'],
  cwd: '/',
  user: { uid: 0, gid: 0 },
  terminal: false,
  hostname: 'old',
  capabilities: { add: [], drop: [] },
  privileged: false,
  knownCapabilities: ['CAP_CHOWN'],
  noNewPrivileges: false,
  mounts: [{ hostPath: '/var/old/data', containerPath: '/data', readonly: false }],
  etcFiles: oldEtc,
  daemonOomScoreAdj: 0,
  annotations: { 'io.kubernetes.cri.container-name': 'counter' },
});

function manifest(): CheckpointManifest {
  return {
    format: 'gvisor-cri-checkpoint',
    version: 1,
    createdAt: new Date(0).toISOString(),
    runscVersion: 'runsc version test',
    pod: { id: 'a'.repeat(64), name: 'p', namespace: 'n', uid: 'u', hostNetwork: false, etcFiles: oldEtc },
    container: {
      id: 'b'.repeat(64), name: 'counter', attempt: 0, image: 'reg/img:1', imageId: `sha256:${'c'.repeat(64)}`, imageRef: 'reg/img@sha256:x',
      mounts: [], stdin: false, stdinOnce: false, tty: false, resources: emptyResources(), stopSignal: 'SIGTERM',
      user: { uid: 0, gid: 0 }, env: ['A=1'], cwd: '/', capabilities: [], noNewPrivileges: false,
    },
    spec: savedSpec,
    sandboxContainers: [{ id: 'b'.repeat(64), name: 'counter' }],
  };
}

const codeOf = (code: number) => (err: unknown) => err instanceof CriError && err.code === code;

test('an archive written by writeCheckpointArchive reads back with its runsc image', async () => {
  const work = join(dir, 'work1');
  await mkdir(join(work, 'checkpoint'), { recursive: true });
  await writeFile(join(work, 'checkpoint', 'checkpoint.img'), 'state');
  const location = join(dir, 'one.tar');
  await writeFile(location, 'an older archive, replaced whole');
  await writeCheckpointArchive(location, work, manifest());
  assert.equal((await stat(location)).mode & 0o777, 0o600);
  assert.deepEqual((await readdir(dir)).filter((n) => n.includes('.tmp-')), []);
  const entries: string[] = [];
  await tarList({ file: location, onentry: (e) => entries.push(e.path) });
  assert.deepEqual(entries.sort(), ['checkpoint/', 'checkpoint/checkpoint.img', 'manifest.json']);

  const out = join(dir, 'out1');
  const m = await readCheckpointArchive(location, out);
  assert.deepEqual(m, manifest());
  assert.equal((await stat(join(out, 'checkpoint', 'checkpoint.img'))).size, 5);
});

test('reading refuses what is not a checkpoint archive, and unpacks nothing but its two names', async () => {
  await assert.rejects(readCheckpointArchive(join(dir, 'absent.tar'), join(dir, 'o2')), codeOf(GrpcStatus.NOT_FOUND));
  await assert.rejects(readCheckpointArchive(dir, join(dir, 'o3')), codeOf(GrpcStatus.INVALID_ARGUMENT));
  const text = join(dir, 'text.tar');
  await writeFile(text, 'not a tar at all\n');
  await assert.rejects(readCheckpointArchive(text, join(dir, 'o4')), codeOf(GrpcStatus.INVALID_ARGUMENT));

  // A tar with extra entries and a symlink: only manifest.json and checkpoint/* regular files land.
  const src = join(dir, 'src5');
  await mkdir(join(src, 'checkpoint'), { recursive: true });
  await writeFile(join(src, 'manifest.json'), JSON.stringify({ ...manifest(), version: 2 }));
  await writeFile(join(src, 'checkpoint', 'checkpoint.img'), 'x');
  await symlink('/etc/passwd', join(src, 'checkpoint', 'pages.img'));
  await writeFile(join(src, 'evil.sh'), 'echo');
  const odd = join(dir, 'odd.tar');
  await tarCreate({ file: odd, cwd: src }, ['manifest.json', 'checkpoint', 'evil.sh']);
  const out = join(dir, 'o5');
  // Version 2 is refused as a precondition, after unpacking safely.
  await assert.rejects(readCheckpointArchive(odd, out), codeOf(GrpcStatus.FAILED_PRECONDITION));
  assert.deepEqual((await readdir(out)).sort(), ['checkpoint', 'manifest.json']);
  assert.deepEqual(await readdir(join(out, 'checkpoint')), ['checkpoint.img']);
});

test('the checkpointed spec moves into the new pod: sandbox id, rootfs, /etc files, volume paths', () => {
  const spec = restoreContainerSpec(savedSpec, {
    sandboxId: 'd'.repeat(64),
    rootfsDir: '/new/rootfs',
    hostname: 'new',
    oldEtcFiles: oldEtc,
    newEtcFiles: newEtc,
    mounts: [{ containerPath: '/data', hostPath: '/var/new/data' }],
  });
  assert.equal(spec.annotations['io.kubernetes.cri.sandbox-id'], 'd'.repeat(64));
  assert.equal(spec.annotations['io.kubernetes.cri.container-name'], 'counter');
  assert.equal(spec.root.path, '/new/rootfs');
  const src = (dest: string): string | undefined => spec.mounts.find((m) => m.destination === dest)?.source;
  assert.equal(src('/etc/hosts'), newEtc.hosts);
  assert.equal(src('/etc/resolv.conf'), newEtc.resolvConf);
  assert.equal(src('/data'), '/var/new/data');
  assert.deepEqual(spec.mounts.map((m) => m.destination), savedSpec.mounts.map((m) => m.destination));
  assert.deepEqual(spec.process, savedSpec.process);
  // The saved spec is not modified.
  assert.equal(savedSpec.mounts.find((m) => m.destination === '/data')?.source, '/var/old/data');

  // A filtered container's exec helper comes from this node's infra rootfs.
  const filtered = { ...savedSpec, mounts: [...savedSpec.mounts, { destination: SECCOMP_HELPER_PATH, type: 'bind', source: '/old/infra/seccomp-exec', options: ['rbind', 'rprivate', 'ro'] }] };
  const moved = restoreContainerSpec(filtered, { sandboxId: 'd', rootfsDir: '/r', hostname: 'h', mounts: [], seccompHelper: '/new/infra/seccomp-exec' });
  assert.equal(moved.mounts.find((m) => m.destination === SECCOMP_HELPER_PATH)?.source, '/new/infra/seccomp-exec');

  assert.throws(
    () => restoreContainerSpec(savedSpec, { sandboxId: 'd', rootfsDir: '/r', hostname: 'h', mounts: [{ containerPath: '/extra', hostPath: '/x' }] }),
    (err: unknown) => err instanceof CriError && err.code === GrpcStatus.INVALID_ARGUMENT && /\/extra/.test(err.message),
  );
});

test('archive references are absolute paths; image references never are', () => {
  assert.equal(isCheckpointArchiveRef('/var/lib/kubelet/checkpoints/c.tar'), true);
  assert.equal(isCheckpointArchiveRef('docker.io/library/busybox:1'), false);
  assert.equal(isCheckpointArchiveRef('sha256:abc'), false);
});

test('CNI result routes get the address gateway of their family when they name none', () => {
  const result = {
    ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1' }, { address: 'fd00::5/64', gateway: 'fd00::1' }],
    routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }, { dst: '192.168.0.0/16', gw: '10.1.0.254' }],
  };
  assert.deepEqual(podRoutes(result), [
    { dst: '0.0.0.0/0', gw: '10.1.0.1' },
    { dst: '::/0', gw: 'fd00::1' },
    { dst: '192.168.0.0/16', gw: '10.1.0.254' },
  ]);
  assert.deepEqual(podRoutes({ ips: [{ address: '10.1.0.5/24' }] }), []);
});
