// Kubelet features that the CRI validation suite checks, over the real
// daemon's socket (issue 15): supplementary groups in Linux's order,
// SupplementalGroupsPolicy with ContainerStatus.user, recursive read-only
// volumes, no_new_privs false with a setuid-root binary, the refused user
// namespace modes, and what a hostNetwork pod sees of listening sockets.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type * as grpc from '@grpc/grpc-js';
import { startDaemon, testConflist, type TestDaemon, removeAllPods, waitFor } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { identityImageEntries, pushTestImage } from '../helpers/image-builder.js';

const INDEX = 41;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let work: string;
let pod: string;

interface ContainerUser {
  linux: { uid: string; gid: string; supplemental_groups: string[] };
}

function podConfig(name: string, extra: Record<string, unknown> = {}) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'conformance', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name), ...extra };
}

function create(name: string, extra: Record<string, unknown>, podId = pod): Promise<{ container_id: string }> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '3600'], ...extra };
  return d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: podId, config, sandbox_config: podConfig('conformance') });
}

async function run(name: string, extra: Record<string, unknown> = {}, podId = pod): Promise<string> {
  const { container_id } = await create(name, extra, podId);
  await d.call('runtime', 'StartContainer', { container_id });
  return container_id;
}

const sh = (id: string, cmd: string) => d.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: id, cmd: ['sh', '-c', cmd], timeout: 20 });
const out = async (id: string, cmd: string): Promise<string> => (await sh(id, cmd)).stdout.toString();
const statusOf = async (id: string) =>
  (await d.call<{ status: { user: ContainerUser; mounts: { container_path: string; readonly: boolean; recursive_read_only: boolean }[] }; info: Record<string, string> }>('runtime', 'ContainerStatus', { container_id: id, verbose: true }));

const securityContext = (sc: Record<string, unknown>) => ({ linux: { security_context: sc } });

async function expectRefused(extra: Record<string, unknown>, message: RegExp): Promise<void> {
  await assert.rejects(create('refused', extra), (err: grpc.ServiceError) => {
    assert.equal(err.code, 3, err.details);
    assert.match(err.details, message);
    return true;
  });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gvcri-conformance-'));
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/conformance', { layers: [{ entries: identityImageEntries() }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
  pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('conformance') })).pod_sandbox_id;
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  if (work) await execa('umount', ['-l', join(work, 'vol', 'sub')]).catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

test('Status advertises supplemental_groups_policy and recursive read-only mounts on every handler, not user namespaces', async () => {
  const s = await d.call<{ runtime_handlers: { name: string; features: { recursive_read_only_mounts: boolean; user_namespaces: boolean } }[]; features: { supplemental_groups_policy: boolean; user_namespaces_host_network: boolean } }>('runtime', 'Status', {});
  assert.deepEqual(s.features, { supplemental_groups_policy: true, user_namespaces_host_network: false });
  assert.deepEqual(s.runtime_handlers, [
    { name: '', features: { recursive_read_only_mounts: true, user_namespaces: false } },
    { name: 'runsc', features: { recursive_read_only_mounts: true, user_namespaces: false } },
  ]);
});

test('supplementary groups are sorted as Linux sorts them; Merge adds the image\'s groups, Strict leaves them out; ContainerStatus reports them', async () => {
  // The image lists the user in 50000 before 1234; Linux's setgroups(2) sorts.
  const merged = await run('merge', securityContext({ run_as_username: 'user' }));
  assert.equal(await out(merged, 'id -G'), '1000 1234 50000\n');
  // The container's first process (pid 1 of its own PID namespace) has them too, not only execs.
  assert.match(await out(merged, 'cat /proc/1/status'), /^Groups:\t1000 1234 50000 *$/m);
  assert.deepEqual((await statusOf(merged)).status.user, { linux: { uid: '1000', gid: '1000', supplemental_groups: ['1000', '1234', '50000'] } });

  const extra = await run('merge-extra', securityContext({ run_as_user: { value: 1000 }, supplemental_groups: [60000, 4000, 1234], supplemental_groups_policy: 'Merge' }));
  assert.equal(await out(extra, 'id -G'), '1000 1234 4000 50000 60000\n');
  assert.deepEqual((await statusOf(extra)).status.user.linux.supplemental_groups, ['1000', '1234', '4000', '50000', '60000']);

  const strict = await run('strict', securityContext({ run_as_user: { value: 1000 }, run_as_group: { value: 3000 }, supplemental_groups: [4000], supplemental_groups_policy: 'Strict' }));
  assert.equal(await out(strict, 'id -u; id -g; id -G'), '1000\n3000\n3000 4000\n');
  assert.match(await out(strict, 'cat /proc/1/status'), /^Groups:\t3000 4000 *$/m);
  assert.deepEqual((await statusOf(strict)).status.user, { linux: { uid: '1000', gid: '3000', supplemental_groups: ['3000', '4000'] } });
});

test('no_new_privs false reaches runsc; runsc 0.0~20240729 ignores setuid bits, so a setuid-root binary keeps the caller\'s euid (README)', async () => {
  const [free, nnp] = await Promise.all([
    run('nnp-false', securityContext({ run_as_user: { value: 1000 }, no_new_privs: false })),
    run('nnp-true', securityContext({ run_as_user: { value: 1000 }, no_new_privs: true })),
  ]);
  const spec = JSON.parse(await readFile(join(JSON.parse((await statusOf(free)).info.info!).runDir, 'bundle', 'config.json'), 'utf8')) as { process: { noNewPrivileges: boolean; user: { uid: number } } };
  assert.equal(spec.process.noNewPrivileges, false);
  assert.equal(spec.process.user.uid, 1000);
  assert.match(await out(free, 'ls -ln /usr/local/bin/busybox'), /^-rwsr-xr-x\s+1 0\s+0 /);
  // Linux: su runs as euid 0 and, root's password being empty, starts `id -u` as root ("0").
  // gVisor 0.0~20240729 (google/gvisor#212): the exec gives no euid 0, in either case.
  for (const id of [free, nnp]) {
    const r = await sh(id, '/usr/local/bin/busybox su -c "id -u" root');
    assert.equal(r.stdout.toString(), '');
    assert.match(r.stderr.toString(), /must be suid to work properly/);
  }
});

test('recursive_read_only makes a host mount inside the volume read-only too; plain readonly stays non-recursive', async () => {
  const vol = join(work, 'vol');
  await mkdir(join(vol, 'sub'), { recursive: true });
  await execa('mount', ['-t', 'tmpfs', 'none', join(vol, 'sub')]);
  await writeFile(join(vol, 'sub', 'marker'), 'inside\n');
  const id = await run('rro', {
    mounts: [
      { container_path: '/mnt/rro', host_path: vol, readonly: true, recursive_read_only: true },
      { container_path: '/mnt/ro', host_path: vol, readonly: true },
    ],
  });
  // The host mount is seen through the recursive read-only volume, and cannot be written.
  assert.equal(await out(id, 'cat /mnt/rro/sub/marker'), 'inside\n');
  assert.equal((await sh(id, 'touch /mnt/rro/sub/x')).stderr.toString(), 'touch: /mnt/rro/sub/x: Read-only file system\n');
  assert.equal((await sh(id, 'touch /mnt/rro/x')).stderr.toString(), 'touch: /mnt/rro/x: Read-only file system\n');
  // Kubernetes' plain read-only volume: the host mount inside keeps its own (writable) flags.
  assert.equal(await out(id, 'touch /mnt/ro/sub/y && echo ok'), 'ok\n');
  assert.notEqual((await sh(id, 'touch /mnt/ro/x')).exit_code, 0);
  const mounts = (await statusOf(id)).status.mounts;
  assert.deepEqual(
    mounts.map((m) => [m.container_path, m.readonly, m.recursive_read_only]),
    [['/mnt/rro', true, true], ['/mnt/ro', true, false]],
  );
});

test('refused with INVALID_ARGUMENT naming the field, leaving no container: recursive read-only without readonly or with propagation, user namespaces', async () => {
  const before = (await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', {})).containers.length;
  await expectRefused({ mounts: [{ container_path: '/m', host_path: work, readonly: false, recursive_read_only: true }] }, /config\.mounts\[0\]\.recursive_read_only needs readonly: true/);
  await expectRefused(
    { mounts: [{ container_path: '/m', host_path: work, readonly: true, recursive_read_only: true, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }] },
    /config\.mounts\[0\]\.recursive_read_only needs propagation PROPAGATION_PRIVATE, got PROPAGATION_HOST_TO_CONTAINER/,
  );
  const userns = (o: Record<string, unknown>) => securityContext({ namespace_options: { userns_options: o } });
  await expectRefused(userns({ mode: 'CONTAINER' }), /userns_options\.mode CONTAINER: a user namespace is per pod/);
  await expectRefused(userns({ mode: 'TARGET' }), /userns_options\.mode TARGET/);
  const mapping = [{ host_id: 65536, container_id: 0, length: 65536 }];
  await expectRefused(userns({ mode: 'POD', uids: mapping, gids: mapping }), /userns_options: user namespaces \(hostUsers: false\) are not supported/);
  assert.equal((await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', {})).containers.length, before);
  // A pod asking for one is refused at RunPodSandbox, before anything of it exists.
  const podsBefore = (await d.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {})).items.length;
  await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: podConfig('userns-pod', userns({ mode: 'POD', uids: mapping, gids: mapping })) }), (err: grpc.ServiceError) => {
    assert.equal(err.code, 3, err.details);
    assert.match(err.details, /config\.linux\.security_context\.namespace_options\.userns_options: user namespaces/);
    return true;
  });
  assert.equal((await d.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {})).items.length, podsBefore);
  // The node's user namespace, and POD without mappings (older kubelets' "unset"), run as before.
  const node = await run('userns-node', userns({ mode: 'NODE' }));
  assert.equal(await out(node, 'id -u'), '0\n');
});

/** A TCP port nothing listens on right now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

test('hostNetwork pod: the pod sees its own listening socket in /proc/net and netstat, but not the node\'s (README)', async () => {
  const node = net.createServer();
  await new Promise<void>((resolve) => node.listen(0, '127.0.0.1', resolve));
  const nodePort = (node.address() as net.AddressInfo).port;
  try {
    const hostPod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('hostnet', { linux: { security_context: { namespace_options: { network: 'NODE' } } } }) })).pod_sandbox_id;
    const port = await freePort();
    const id = await run('listener', { command: ['nc', '-l', '-p', String(port)] }, hostPod);
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    // The socket is a real one on the node (runsc --network=host); nc serves one connection, so only look.
    await waitFor(async () => (await execa('ss', ['-Hltn', `sport = :${port}`])).stdout.includes('LISTEN'), 15_000, `port ${port} listening on the node`);
    const netstat = await out(id, 'netstat -ltn');
    assert.match(netstat, new RegExp(`:::${port}\\s+:::\\*\\s+LISTEN`));
    assert.match(await out(id, 'cat /proc/net/tcp6'), new RegExp(`:${hex} 0{32}:0000 0A `));
    // Linux would list the node's own listener too; gVisor lists only the sandbox's sockets.
    assert.doesNotMatch(netstat, new RegExp(`:${nodePort}\\s`));
    assert.doesNotMatch(await out(id, 'cat /proc/net/tcp'), new RegExp(`:${nodePort.toString(16).toUpperCase().padStart(4, '0')} `));
  } finally {
    await new Promise((resolve) => node.close(resolve));
  }
});
