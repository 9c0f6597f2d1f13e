import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALL_LINUX_CAPABILITIES, DEFAULT_CAPABILITIES, resolveCapabilities } from '../../runtime/spec/capabilities.js';
import { ANNOTATION_CONTAINER_TYPE, ANNOTATION_SANDBOX_ID, buildContainerSpec, buildSandboxSpec, DEFAULT_MASKED_PATHS, type ContainerSpecInput } from '../../runtime/spec/oci-spec.js';
import { SECCOMP_HELPER_PATH } from '../../runtime/seccomp/exec-helper.js';

const base: ContainerSpecInput = {
  sandboxId: 'sb', rootfsDir: '/r', readonlyRootfs: false, args: ['sh'], env: ['A=1'], cwd: '', user: { uid: 1, gid: 2, additionalGids: [3] },
  terminal: false, hostname: 'h', capabilities: { add: [], drop: [] }, privileged: false, knownCapabilities: ALL_LINUX_CAPABILITIES.slice(0, 38),
  noNewPrivileges: true, mounts: [], daemonOomScoreAdj: 100, etcFiles: { hosts: '/p/hosts', resolvConf: '/p/resolv.conf', hostname: '/p/hostname' },
};

test('sandbox spec: netns, grouping annotations, cgroups path, oom floor, etc mounts', () => {
  const s = buildSandboxSpec({ id: 'sb', hostname: 'pod', rootfsDir: '/infra', args: ['/pause'], netnsPath: '/run/netns/x', cgroupsPath: '/kubepods/pod1/sb', sysctls: { 'net.ipv4.ip_forward': '1' }, oomScoreAdj: -998, daemonOomScoreAdj: -500, etcFiles: { resolvConf: '/p/resolv.conf' } });
  assert.deepEqual(s.linux.namespaces.find((n) => n.type === 'network'), { type: 'network', path: '/run/netns/x' });
  assert.equal(s.annotations[ANNOTATION_CONTAINER_TYPE], 'sandbox');
  assert.equal(s.linux.cgroupsPath, '/kubepods/pod1/sb');
  assert.equal(s.process.oomScoreAdj, -500);
  assert.equal(s.root.readonly, true);
  assert.equal(s.linux.sysctl?.['net.ipv4.ip_forward'], '1');
  assert.ok(s.mounts.some((m) => m.destination === '/etc/resolv.conf' && m.source === '/p/resolv.conf'));
  const host = buildSandboxSpec({ id: 'sb', hostname: 'pod', rootfsDir: '/infra', args: ['/pause'], daemonOomScoreAdj: 0 });
  assert.equal(host.linux.namespaces.some((n) => n.type === 'network'), false);
});

test('container spec: defaults, user, annotations, own mount replaces pod etc file', () => {
  const s = buildContainerSpec({ ...base, mounts: [{ hostPath: '/h/hosts', containerPath: '/etc/hosts', readonly: true, propagation: 'rslave' }], resources: { cpuShares: 512, cpuQuota: 50000, cpuPeriod: 100000, memoryLimitBytes: 1 << 26 } });
  assert.equal(s.annotations[ANNOTATION_SANDBOX_ID], 'sb');
  assert.equal(s.annotations[ANNOTATION_CONTAINER_TYPE], 'container');
  assert.deepEqual(s.process.user, { uid: 1, gid: 2, additionalGids: [3] });
  assert.equal(s.process.cwd, '/');
  assert.ok(s.process.env[0]!.startsWith('PATH='));
  assert.equal(s.process.oomScoreAdj, 100);
  assert.deepEqual(s.process.capabilities?.bounding, ALL_LINUX_CAPABILITIES.filter((c) => DEFAULT_CAPABILITIES.includes(c)));
  const hosts = s.mounts.filter((m) => m.destination === '/etc/hosts');
  assert.deepEqual(hosts, [{ destination: '/etc/hosts', type: 'bind', source: '/h/hosts', options: ['rbind', 'rslave', 'ro'] }]);
  assert.ok(s.mounts.some((m) => m.destination === '/etc/resolv.conf'));
  for (const d of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys']) assert.ok(s.mounts.some((m) => m.destination === d), d);
  assert.deepEqual(s.linux.maskedPaths, [...DEFAULT_MASKED_PATHS]);
  assert.deepEqual(s.linux.resources, { cpu: { shares: 512, quota: 50000, period: 100000 }, memory: { limit: 1 << 26 } });
});

test('a seccomp profile brings the exec helper, mounted read-only; none without a profile', () => {
  const s = buildContainerSpec({ ...base, seccomp: { defaultAction: 'SCMP_ACT_ERRNO' }, seccompHelper: '/infra/seccomp-exec' });
  assert.deepEqual(s.linux.seccomp, { defaultAction: 'SCMP_ACT_ERRNO' });
  assert.deepEqual(s.mounts.filter((m) => m.destination === SECCOMP_HELPER_PATH), [{ destination: SECCOMP_HELPER_PATH, type: 'bind', source: '/infra/seccomp-exec', options: ['rbind', 'rprivate', 'ro'] }]);
  assert.equal(buildContainerSpec({ ...base, seccompHelper: '/infra/seccomp-exec' }).mounts.some((m) => m.destination === SECCOMP_HELPER_PATH), false);
});

test('privileged: every known capability, no masked paths, rw sysfs, no seccomp', () => {
  const s = buildContainerSpec({ ...base, privileged: true, seccomp: { defaultAction: 'SCMP_ACT_ERRNO' }, seccompHelper: '/infra/seccomp-exec' });
  assert.equal(s.mounts.some((m) => m.destination === SECCOMP_HELPER_PATH), false);
  assert.deepEqual(s.process.capabilities?.bounding, base.knownCapabilities);
  assert.deepEqual(s.linux.maskedPaths, []);
  assert.ok(s.mounts.find((m) => m.destination === '/sys')?.options?.includes('rw'));
  assert.equal(s.linux.seccomp, undefined);
});

test('capabilities follow containerd: ALL, add, drop, unknown names left out', () => {
  const known = ALL_LINUX_CAPABILITIES.filter((c) => c !== 'CAP_PERFMON');
  assert.deepEqual(resolveCapabilities({ add: ['ALL'], drop: ['chown'], privileged: false, known }), known.filter((c) => c !== 'CAP_CHOWN'));
  assert.deepEqual(resolveCapabilities({ add: ['NET_ADMIN', 'perfmon'], drop: ['ALL'], privileged: false, known }), ['CAP_NET_ADMIN']);
  assert.equal(resolveCapabilities({ add: [], drop: ['KILL'], privileged: false, known }).includes('CAP_KILL'), false);
});

test('AppArmor: a Localhost profile must be loaded when AppArmor is on; with it off profiles are only noted', async () => {
  const { mapContainerConfig } = await import('../../runtime/spec/container-config.js');
  const config = (apparmor: object) => ({
    metadata: { name: 'c', attempt: 0 }, image: { image: 'x' }, command: ['sh'], args: [], working_dir: '', envs: [], mounts: [], devices: [], CDI_devices: [], labels: {}, annotations: {},
    log_path: '', stdin: false, stdin_once: false, tty: false, linux: { security_context: { apparmor, capabilities: null, masked_paths: [], readonly_paths: [], supplemental_groups: [] } },
  });
  const input = (apparmor: object, loaded?: Set<string>) => ({ config: config(apparmor) as never, image: {}, files: { passwd: '', group: '' }, podPrivileged: false, appArmorProfiles: loaded });
  assert.throws(() => mapContainerConfig(input({ profile_type: 'Localhost', localhost_ref: 'non-existent-profile' }, new Set(['docker-default']))), (err: { code: number; message: string }) => {
    assert.equal(err.code, 9);
    assert.match(err.message, /profile "non-existent-profile" is not loaded/);
    return true;
  });
  assert.ok(mapContainerConfig(input({ profile_type: 'Localhost', localhost_ref: 'docker-default' }, new Set(['docker-default']))).notes.some((n) => /AppArmor/.test(n)));
  assert.ok(mapContainerConfig(input({ profile_type: 'Localhost', localhost_ref: 'anything' })).notes.some((n) => /AppArmor/.test(n)));
});

test('mount propagation: Bidirectional is refused naming the mount (gVisor cannot propagate to the host)', async () => {
  const { mapContainerConfig } = await import('../../runtime/spec/container-config.js');
  const config = {
    metadata: { name: 'c', attempt: 0 }, image: { image: 'x' }, command: ['sh'], args: [], working_dir: '', envs: [], devices: [], CDI_devices: [], labels: {}, annotations: {},
    log_path: '', stdin: false, stdin_once: false, tty: false, linux: null,
    mounts: [{ container_path: '/a', host_path: '/tmp', propagation: 'PROPAGATION_HOST_TO_CONTAINER' }, { container_path: '/b', host_path: '/tmp', propagation: 'PROPAGATION_BIDIRECTIONAL' }],
  };
  assert.throws(() => mapContainerConfig({ config: config as never, image: {}, files: { passwd: '', group: '' }, podPrivileged: false }), (err: { code: number; message: string }) => {
    assert.equal(err.code, 3);
    assert.match(err.message, /config\.mounts\[1\]\.propagation: Bidirectional cannot work in gVisor/);
    return true;
  });
});
