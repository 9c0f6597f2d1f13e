// The checkpoint archive format and the move of a checkpointed spec into a new pod,
// without runsc: archives are built by hand here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { c as tarCreate, t as tarList } from 'tar';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { isCheckpointArchiveRef, readCheckpointArchive, writeCheckpointArchive, type CheckpointManifest } from '../../runtime/checkpoint/archive.js';
import { restoreContainerSpec, type RestoreSpecInput } from '../../runtime/checkpoint/restore-spec.js';
import { buildContainerSpec, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from '../../runtime/spec/oci-spec.js';
import { DEFAULT_CAPABILITIES } from '../../runtime/spec/capabilities.js';
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

function manifest(): Omit<CheckpointManifest, 'imageDigests'> {
  return {
    format: 'gvisor-cri-checkpoint',
    version: 2,
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
  // sha256 of "state".
  assert.deepEqual(m, { ...manifest(), imageDigests: { 'checkpoint.img': 'sha256:4ba69735ca53765ed6a709edb56c6ea236b7193a3b29a6b390c346f0f4340e4e' } });
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
  await writeFile(join(src, 'manifest.json'), JSON.stringify({ ...manifest(), version: 99 }));
  await writeFile(join(src, 'checkpoint', 'checkpoint.img'), 'x');
  await symlink('/etc/passwd', join(src, 'checkpoint', 'pages.img'));
  await writeFile(join(src, 'evil.sh'), 'echo');
  const odd = join(dir, 'odd.tar');
  await tarCreate({ file: odd, cwd: src }, ['manifest.json', 'checkpoint', 'evil.sh']);
  const out = join(dir, 'o5');
  // Version 99 is refused as a precondition, after unpacking safely.
  await assert.rejects(readCheckpointArchive(odd, out), codeOf(GrpcStatus.FAILED_PRECONDITION));
  assert.deepEqual((await readdir(out)).sort(), ['checkpoint', 'manifest.json']);
  assert.deepEqual(await readdir(join(out, 'checkpoint')), ['checkpoint.img']);
});

/** What a new config without security settings allows, on a node at /new. */
const restoreInput = (over: Partial<RestoreSpecInput> = {}): RestoreSpecInput => ({
  sandboxId: 'd'.repeat(64),
  rootfsDir: '/new/rootfs',
  hostname: 'new',
  oldEtcFiles: oldEtc,
  newEtcFiles: newEtc,
  mounts: [{ containerPath: '/data', hostPath: '/var/new/data', readonly: false }],
  maskFile: '/run/new/masked-file',
  capabilities: DEFAULT_CAPABILITIES,
  privileged: false,
  noNewPrivileges: false,
  maskedPaths: DEFAULT_MASKED_PATHS,
  readonlyPaths: DEFAULT_READONLY_PATHS,
  runscFlags: {},
  minOomScoreAdj: 0,
  ...over,
});

/** Asserts restoreContainerSpec refuses `spec` with INVALID_ARGUMENT matching `re`. */
const refuses = (spec: typeof savedSpec, re: RegExp, over: Partial<RestoreSpecInput> = {}): void => {
  assert.throws(() => restoreContainerSpec(spec, restoreInput(over)), (err: unknown) => err instanceof CriError && err.code === GrpcStatus.INVALID_ARGUMENT && re.test(err.message));
};

test('the checkpointed spec moves into the new pod: sandbox id, rootfs, /etc files, volume paths', () => {
  const spec = restoreContainerSpec(savedSpec, restoreInput());
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
  // A volume the new config makes read-only is read-only.
  const ro = restoreContainerSpec(savedSpec, restoreInput({ mounts: [{ containerPath: '/data', hostPath: '/var/new/data', readonly: true }] }));
  assert.ok(ro.mounts.find((m) => m.destination === '/data')?.options?.includes('ro'));

  // A filtered container's exec helper comes from this node's infra rootfs, its seccomp from the new config.
  const filtered = { ...savedSpec, linux: { ...savedSpec.linux, seccomp: { defaultAction: 'SCMP_ACT_ALLOW' } }, mounts: [...savedSpec.mounts, { destination: SECCOMP_HELPER_PATH, type: 'bind', source: '/old/infra/seccomp-exec', options: ['rbind', 'rprivate', 'ro'] }] };
  const moved = restoreContainerSpec(filtered, restoreInput({ seccompHelper: '/new/infra/seccomp-exec', seccomp: { defaultAction: 'SCMP_ACT_ERRNO' } }));
  assert.equal(moved.mounts.find((m) => m.destination === SECCOMP_HELPER_PATH)?.source, '/new/infra/seccomp-exec');
  assert.equal(moved.linux.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(restoreContainerSpec(filtered, restoreInput({ seccompHelper: '/h' })).linux.seccomp, undefined);

  refuses(savedSpec, /\/extra/, { mounts: [...restoreInput().mounts, { containerPath: '/extra', hostPath: '/x', readonly: false }] });
});

test('a hand-edited checkpointed spec is refused for each thing the new config does not give it', () => {
  // A host mount of /etc the new config does not have.
  const withEtc = { ...savedSpec, mounts: [...savedSpec.mounts, { destination: '/host-etc', type: 'bind', source: '/etc', options: ['rbind', 'rw'] }] };
  refuses(withEtc, /mount \/host-etc of host path \/etc/);
  // A volume the new config leaves out.
  refuses(savedSpec, /mount \/data of host path \/var\/old\/data/, { mounts: [] });
  // A block device mount.
  refuses({ ...savedSpec, mounts: [...savedSpec.mounts, { destination: '/disk', type: 'ext4', source: '/dev/sda1' }] }, /mount \/disk of type ext4/);
  // A capability beyond the new config's.
  const sysAdmin = { ...savedSpec, process: { ...savedSpec.process, capabilities: { bounding: ['CAP_CHOWN', 'CAP_SYS_ADMIN'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'] } } };
  refuses(sysAdmin, /capabilities CAP_SYS_ADMIN/);
  assert.ok(restoreContainerSpec(sysAdmin, restoreInput({ capabilities: [...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'] })));
  refuses(savedSpec, /no_new_privs/, { noNewPrivileges: true });
  refuses({ ...savedSpec, linux: { ...savedSpec.linux, maskedPaths: [] } }, /unmasked paths \/proc\/acpi/);
  // A runsc flag: refused unless the new pod has it allowed with the same value.
  const flagged = { ...savedSpec, annotations: { ...savedSpec.annotations, 'dev.gvisor.flag.host-uds': 'all' } };
  refuses(flagged, /annotation dev\.gvisor\.flag\.host-uds/);
  refuses(flagged, /annotation dev\.gvisor\.flag\.host-uds/, { runscFlags: { 'host-uds': 'open' } });
  assert.equal(restoreContainerSpec(flagged, restoreInput({ runscFlags: { 'host-uds': 'all' } })).annotations['dev.gvisor.flag.host-uds'], 'all');
  refuses({ ...savedSpec, annotations: { ...savedSpec.annotations, 'dev.gvisor.spec.mount.x.source': '/etc' } }, /dev\.gvisor\.spec\.mount\.x\.source/);
  // Hooks (run on the host) and host namespaces.
  refuses({ ...savedSpec, hooks: { prestart: [{ path: '/bin/sh' }] } } as typeof savedSpec, /spec fields hooks/);
  refuses({ ...savedSpec, linux: { ...savedSpec.linux, namespaces: [{ type: 'network', path: '/proc/1/ns/net' }] } }, /namespace network at \/proc\/1\/ns\/net/);
  // A lower oom_score_adj than the daemon's is raised to it.
  const oom = { ...savedSpec, process: { ...savedSpec.process, oomScoreAdj: -1000 } };
  assert.equal(restoreContainerSpec(oom, restoreInput({ minOomScoreAdj: -500 })).process.oomScoreAdj, -500);
});

test('an archive whose image bytes differ from the manifest digests is refused, whatever was changed', async () => {
  const work = join(dir, 'work-digest');
  await mkdir(join(work, 'checkpoint'), { recursive: true });
  await writeFile(join(work, 'checkpoint', 'checkpoint.img'), 'state');
  const location = join(dir, 'digest.tar');
  const written = await writeCheckpointArchive(location, work, manifest());
  const repack = async (name: string, edit: (src: string) => Promise<void>): Promise<string> => {
    const src = join(dir, `${name}-src`);
    await mkdir(join(src, 'checkpoint'), { recursive: true });
    await writeFile(join(src, 'manifest.json'), JSON.stringify(written));
    await writeFile(join(src, 'checkpoint', 'checkpoint.img'), 'state');
    await edit(src);
    const out = join(dir, `${name}.tar`);
    await tarCreate({ file: out, cwd: src }, ['manifest.json', 'checkpoint']);
    return out;
  };
  const altered = await repack('altered', (src) => writeFile(join(src, 'checkpoint', 'checkpoint.img'), 'stAte'));
  await assert.rejects(readCheckpointArchive(altered, join(dir, 'o-altered')), (err: unknown) => err instanceof CriError && err.code === GrpcStatus.INVALID_ARGUMENT && /checkpoint\/checkpoint\.img does not match its digest/.test(err.message));
  const added = await repack('added', (src) => writeFile(join(src, 'checkpoint', 'pages.img'), 'more'));
  await assert.rejects(readCheckpointArchive(added, join(dir, 'o-added')), (err: unknown) => err instanceof CriError && err.code === GrpcStatus.INVALID_ARGUMENT && /unlisted pages\.img/.test(err.message));
  const undigested = await repack('undigested', (src) => writeFile(join(src, 'manifest.json'), JSON.stringify({ ...written, imageDigests: undefined })));
  await assert.rejects(readCheckpointArchive(undigested, join(dir, 'o-undigested')), (err: unknown) => err instanceof CriError && err.code === GrpcStatus.INVALID_ARGUMENT && /imageDigests/.test(err.message));
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
